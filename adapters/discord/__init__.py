"""The Discord adapter: intake (events → bot/), platform (bot/'s ChatPlatform), and one file per Discord quirk."""
