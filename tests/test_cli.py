"""The `supportbot` command line as a user runs it: a real subprocess, settings from the environment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bot.stores.sqlite import SqliteStore
from llm.types import LedgerRecord, Outcome, Usage
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "OPENAI", "ANTHROPIC", "SLACK",
                                                                      "DISCORD", "REDIS"))}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**clean, **env},
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "cli.db")


@pytest.fixture
def fake_server() -> Iterator[str]:
    """The fake provider server as a separate process (the CLI runs in its own process too)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.llm_server", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    openai_url = proc.stdout.readline().strip().split("=", 1)[1]
    proc.stdout.readline()
    yield openai_url
    proc.terminate()
    proc.wait(10)


def record(channel: str, cost: str, model: str = "gpt-4o-mini", user: str = "U1") -> LedgerRecord:
    return LedgerRecord(
        at=datetime.now(UTC), provider="openai", model=model, task="summarize", platform="slack", workspace="T1",
        channel=channel, user=user, feature="summary", usage=Usage(input=100, output=20), cost_usd=Decimal(cost),
        latency_s=1.0, ttft_s=0.3, outcome=Outcome.OK,
    )


async def seed(db: str) -> None:
    store = await SqliteStore(db).open()
    for channel, cost in (("C1", "0.002"), ("C1", "0.001"), ("C2", "0.010")):
        await store.ledger.add(record(channel, cost))
    await store.close()


def test_spend_json_is_one_object_with_exact_totals(db: str) -> None:
    import asyncio

    asyncio.run(seed(db))
    out = run(["spend", "--days", "7", "--json"], {"SUPPORTBOT_DB": db})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # exactly one JSON object
    assert Decimal(report["total_usd"]) == Decimal("0.013") and report["calls"] == 3
    assert set(report["by_channel"]) == {"C1", "C2"}
    one = json.loads(run(["spend", "--channel", "C1", "--json"], {"SUPPORTBOT_DB": db}).stdout)
    assert Decimal(one["total_usd"]) == Decimal("0.003") and one["scope"] == "C1"
    text = run(["spend"], {"SUPPORTBOT_DB": db}).stdout
    assert "LLM spend — all channels" in text and "gpt-4o-mini" in text


def test_invalid_setting_stops_with_one_line_naming_it_and_no_secret(db: str) -> None:
    out = run(["spend"], {"SUPPORTBOT_DB": db, "SUPPORTBOT_MAX_RETRIES": "lots", "OPENAI_API_KEY": "sk-very-secret"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "supportbot: invalid setting SUPPORTBOT_MAX_RETRIES: Input should be a valid integer, unable to parse "
        "string as an integer"
    ]
    assert "sk-very-secret" not in out.stderr + out.stdout and "Traceback" not in out.stderr


def test_doctor_says_what_is_missing(db: str) -> None:
    out = run(["doctor"], {"SUPPORTBOT_DB": db})
    assert out.returncode == 1
    assert "FAIL  models: no provider key: set OPENAI_API_KEY and/or ANTHROPIC_API_KEY" in out.stdout
    assert "ok    store: sqlite" in out.stdout


async def test_doctor_with_a_discord_token_runs_the_discord_checks(db: str) -> None:
    """adapters/discord/doctor.py, reached from `supportbot doctor` (bot/doctor.py) when DISCORD_TOKEN is set."""
    async with FakeDiscord() as fake:
        env = {"SUPPORTBOT_DB": db, "DISCORD_API_URL": fake.api_base}
        good = await asyncio.to_thread(run, ["doctor"], {**env, "DISCORD_TOKEN": fake.token})
        bad = await asyncio.to_thread(run, ["doctor"], {**env, "DISCORD_TOKEN": "not-the-token"})
    assert f"ok    discord: token valid: bot supportbot ({fake.bot_user_id})" in good.stdout, good.stdout
    assert "ok    discord intents: Message Content intent enabled" in good.stdout
    assert "no check for it" not in good.stdout + bad.stdout
    assert "FAIL  discord: DISCORD_TOKEN was refused (401)" in bad.stdout and bad.returncode == 1


async def test_doctor_with_a_slack_token_checks_the_token_scopes_and_mode(db: str) -> None:
    """adapters/slack/doctor.py, reached from `supportbot doctor` when SLACK_BOT_TOKEN is set: auth.test names the
    installation, the x-oauth-scopes header is compared with what each feature needs, and the mode is set up."""
    async with FakeSlack() as fake:
        env = {"SUPPORTBOT_DB": db, "SLACK_API_URL": fake.api_url, "SLACK_BOT_TOKEN": fake.bot_token}
        good = await asyncio.to_thread(run, ["doctor"], {**env, "SLACK_SIGNING_SECRET": "s3cret"})
        fake.scopes = [s for s in fake.scopes if s not in ("canvases:write", "channels:history")]
        narrow = await asyncio.to_thread(run, ["doctor"], {**env, "SLACK_APP_TOKEN": fake.app_token})
        unsigned = await asyncio.to_thread(run, ["doctor"], env)
        wrong_app_token = await asyncio.to_thread(run, ["doctor"], {**env, "SLACK_APP_TOKEN": "xapp-not-it"})
        bad = await asyncio.to_thread(run, ["doctor"], {**env, "SLACK_BOT_TOKEN": "xoxb-not-the-token"})
    assert f"ok    slack: token valid: bot supportbot ({fake.bot_user_id}) in workspace Fake Workspace " \
        f"({fake.team_id})" in good.stdout, good.stdout
    assert "ok    slack scopes: mentions → summaries: granted" in good.stdout
    assert "ok    slack scopes: the FAQ as a channel canvas: granted" in good.stdout
    assert "ok    slack mode: HTTP: requests to /slack/events are checked with SLACK_SIGNING_SECRET" in good.stdout
    assert "no check for it" not in good.stdout and "FAIL  slack" not in good.stdout
    # A missing scope: the core feature fails, another feature is a warning naming what to add.
    assert "FAIL  slack scopes: mentions → summaries: missing channels:history" in narrow.stdout, narrow.stdout
    assert "warn  slack scopes: the FAQ as a channel canvas: missing canvases:write" in narrow.stdout
    assert "ok    slack mode: Socket Mode: SLACK_APP_TOKEN accepted" in narrow.stdout
    assert "FAIL  slack mode: HTTP mode needs SLACK_SIGNING_SECRET" in unsigned.stdout
    assert "FAIL  slack mode: Socket Mode: SLACK_APP_TOKEN was refused (invalid_auth)" in wrong_app_token.stdout
    assert "FAIL  slack: SLACK_BOT_TOKEN was refused (invalid_auth)" in bad.stdout
    assert "slack scopes" not in bad.stdout  # nothing more is asked with a token Slack refused
    assert "Traceback" not in good.stderr + narrow.stderr + unsigned.stderr + wrong_app_token.stderr + bad.stderr


async def test_doctor_names_an_org_wide_enterprise_install(db: str) -> None:
    async with FakeSlack() as fake:
        fake.enterprise_id, fake.enterprise_install = "E0ORG", True
        env = {"SUPPORTBOT_DB": db, "SLACK_API_URL": fake.api_url, "SLACK_BOT_TOKEN": fake.bot_token,
               "SLACK_SIGNING_SECRET": "s3cret"}  # fmt: skip
        out = await asyncio.to_thread(run, ["doctor"], env)
    assert "ok    slack: token valid: bot supportbot (UBOT) installed org-wide in Enterprise Grid organisation E0ORG" \
        in out.stdout, out.stdout


def test_doctor_checks_a_configured_provider(db: str, fake_server: str) -> None:
    out = run(["doctor"], {"SUPPORTBOT_DB": db, "OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake_server})
    assert "ok    openai: gpt-5.4-mini answered" in out.stdout, out.stdout  # the first route using openai
    # Each route model is looked up in the server's own model list; a server that is not OpenAI's is self-hosted.
    assert ("warn  model openai:gpt-5.4-mini: listed by the server (routes summarize, combine, classify, faq_brief, probe); "
            "self-hosted, no price: its calls show as unpriced (add it to SUPPORTBOT_PRICES_FILE)") in out.stdout
    bad = run(["doctor"], {"SUPPORTBOT_DB": db, "OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                           "SUPPORTBOT_CONNECT_TIMEOUT_S": "1"})
    assert bad.returncode == 1 and "FAIL  openai:" in bad.stdout


def test_doctor_flags_a_route_model_the_provider_does_not_list(db: str, fake_server: str, tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('["gpt-5.4-mini"]\ninput = "0"\noutput = "0"\n', encoding="utf-8")
    env = {"SUPPORTBOT_DB": db, "OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake_server,
           "SUPPORTBOT_ROUTES": '{"faq": ["openai:gpt-4.1", "openai:gpt-5.4"]}', "SUPPORTBOT_PRICES_FILE": str(prices)}
    out = run(["doctor"], env)
    assert out.returncode == 1, out.stdout
    assert ("FAIL  model openai:gpt-4.1: not in openai's model list: retired or renamed? (routes faq); "
            "today's default: gpt-5.4") in out.stdout, out.stdout
    assert "ok    model openai:gpt-5.4-mini: listed by the server (routes summarize, combine, classify, faq_brief, probe); " \
        "self-hosted, priced by price file" in out.stdout
    prices.write_text('["gpt-5.4-mini"]\ninptu = "0"\n', encoding="utf-8")
    broken = run(["doctor"], env)
    assert "FAIL  prices: SUPPORTBOT_PRICES_FILE: " in broken.stdout and "unknown price field(s) ['inptu']" in broken.stdout
    assert "Traceback" not in broken.stderr


def test_run_without_tokens_opens_the_console_and_says_what_to_set(db: str) -> None:
    out = run(["run"], {"SUPPORTBOT_DB": db}, stdin="how do I reset my password?\n@bot summarize\n")
    assert out.returncode == 0, out.stderr
    assert "supportbot console" in out.stdout and "OPENAI_API_KEY" in out.stdout
    assert "Traceback" not in out.stderr


def test_console_replay_with_a_model(db: str, fake_server: str, tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    lines = [
        {"channel": "help", "user": "ana", "text": "apt says the disk is full", "ts": "1700000000.0"},
        {"channel": "help", "user": "ben", "text": "run du -sh /var/cache/apt", "thread": "1700000000.0",
         "ts": "1700000001.0"},
        {"channel": "help", "user": "ana", "text": "@bot summarize", "thread": "1700000000.0"},
    ]
    transcript.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    env = {"SUPPORTBOT_DB": db, "OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake_server}
    out = run(["console", "--replay", str(transcript), "--show-edits"], env)
    assert out.returncode == 0, out.stderr
    assert "post m" in out.stdout and "edit m" in out.stdout and "Summary:" in out.stdout


class Terminal:
    """A program on a pseudo-terminal, as a person runs it: stdin, stdout and stderr are all the one terminal."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import pty

        self.master, slave = pty.openpty()
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "OPENAI", "ANTHROPIC",
                                                                          "SLACK", "DISCORD", "REDIS"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
            env={**clean, **env, "TERM": "dumb"}, start_new_session=True,
        )
        os.close(slave)
        self.screen = ""

    def expect(self, text: str, *, within_s: float = 60) -> str:
        """Everything shown until ``text`` appears (fails with the screen if it never does)."""
        import select
        import time

        deadline = time.monotonic() + within_s
        start = len(self.screen)
        while text not in self.screen[start:]:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"{text!r} never appeared; the terminal shows:\n{self.screen[-3000:]}"
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the program ended
                chunk = b""
            assert chunk, f"the program ended before {text!r}; the terminal shows:\n{self.screen[-3000:]}"
            self.screen += chunk.decode(errors="replace").replace("\r\n", "\n")
        return self.screen[start:]

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


def test_interactive_console_in_a_terminal_shows_every_reply_and_no_log_lines(
    db: str, fake_server: str, tmp_path: Path
) -> None:
    env = {"SUPPORTBOT_DB": db, "OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": fake_server,
           "TIKTOKEN_CACHE_DIR": os.environ.get("TIKTOKEN_CACHE_DIR", ""),
           # DEBUG: every HTTP request is logged too (INFO keeps the HTTP clients quiet), so there is plenty
           # that must not reach the screen.
           "SUPPORTBOT_LOG_LEVEL": "DEBUG"}  # fmt: skip
    term = Terminal(["console"], env)
    try:
        term.expect("#general you> ")
        term.type("my export to CSV fails with a timeout")
        term.expect("#general you> ")
        term.type("@bot summarize")
        assert "bot> Summary:" in term.expect("#general you> ")  # the streamed reply
        term.type("/llmcost")
        assert "LLM spend — general" in term.expect("#general you> ")  # a report: never posted, still shown
        term.type("/faq 9999999999999999999999")
        assert "bot> Usage: /faq [days]" in term.expect("#general you> ")  # a one-line reply
        term.type("/llmcost all")
        assert "Only admins can see the spend of all channels" in term.expect("#general you> ")  # a refusal
        term.type("/frobnicate")
        assert "Unknown or incomplete command /frobnicate. Commands:" in term.expect("#general you> ")
        os.write(term.master, b"\x04")  # Ctrl-D
        assert term.proc.wait(30) == 0
    finally:
        term.close()
    assert " INFO " not in term.screen and "HTTP Request" not in term.screen, term.screen
    log = Path(db).with_name(Path(db).stem + "-console.log")
    assert "HTTP Request" in log.read_text()  # the logs went to the file the banner names
    assert f"Logs go to {log}" in term.screen
