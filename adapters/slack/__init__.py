"""The Slack adapter: intake (events → bot/), platform (bot/'s ChatPlatform), and one file per Slack quirk."""
