"""The Discord adapter, one job per module: run (the process), intake (gateway events → bot/), commands (slash
commands and the message menu), platform (bot/'s ChatPlatform) with pacing, history, pins and neutral (translation),
interaction (answering where the bot is no member), janitor (background work), guard, render, doctor, endpoints."""
