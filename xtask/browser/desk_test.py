#!/usr/bin/env python3
"""A full handover through the agent desk, in headless Chromium.

The bot side speaks to `handover serve` over HTTP (standard library only); the agent side
is a real browser on the emulator's desk (`/_emulator/desk`), driven with Selenium:

  1. the bot starts a handover (POST /v1/handovers, a transcript with a 3500-character line);
  2. the new conversation appears in the desk's list (#conversations) and is opened;
  3. the bot transcript shows on the desk (MIAW: as its separate 3000-character chunks);
  4. the desk accepts it (#accept) and answers (#answer, #send);
  5. the bot long-polls its events until that `agent_message` arrives, then answers;
  6. the user's answer appears on the desk as a `.message[data-from="user"]`;
  7. the desk ends it (#end); the bot long-polls until `status` is `completed`;
  8. the service's live view (/ui) lists the handover once the API key is entered in #key,
     and shows its event log (#events).

Environment:
  DESK_URL        the emulator's desk, e.g. http://127.0.0.1:41234/_emulator/desk (required)
  SERVICE_URL     `handover serve`, e.g. http://127.0.0.1:8080 (required)
  API_KEY         an API key of the service (required)
  PROVIDER        the provider configuration to hand over to, e.g. liveagent (required)
  SCREENSHOT_DIR  save desk.png and ui.png there (and failure.png on a failure)
  TIMEOUT_SECS    how long each step may take (default 20)
  AGENT_NAME      the desk's agent name (default Dana, unlike the scripted agent's Ann)
  CHROMIUM        the browser binary (default: chromium or chromium-browser on PATH)
  CHROMEDRIVER    the driver binary (default: chromedriver on PATH)

Exit status: 0 when the whole handover went through, 1 with a message naming the step
that failed otherwise, 2 when the environment is incomplete.
"""

import json
import os
import shutil
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the environment, not the test
    print("desk_test: selenium is not installed (python3 -m venv .venv && .venv/bin/pip install selenium)",
          file=sys.stderr)
    sys.exit(2)

ANSWER = "Hello from the desk"
# In the transcript, so the test finds its own conversation among any others at the contact center.
MARKER = f"desk-test-{uuid.uuid4().hex[:12]}"
REPLY = "Thanks, desk!"
REPLY_ID = "desk-1"


class Failure(Exception):
    """A step of the handover did not happen."""


def env(name, default=None, required=False):
    value = os.environ.get(name, default)
    if required and not value:
        print(f"desk_test: set {name} (see xtask/browser/README.md)", file=sys.stderr)
        sys.exit(2)
    return value


DESK_URL = env("DESK_URL", required=True)
SERVICE_URL = env("SERVICE_URL", required=True).rstrip("/")
API_KEY = env("API_KEY", required=True)
PROVIDER = env("PROVIDER", required=True)
SCREENSHOT_DIR = env("SCREENSHOT_DIR")
TIMEOUT = float(env("TIMEOUT_SECS", "20"))
AGENT = env("AGENT_NAME", "Dana")

_desk = urllib.parse.urlsplit(DESK_URL)
EMULATOR = f"{_desk.scheme}://{_desk.netloc}"

current_step = "starting"


def step(name):
    global current_step
    current_step = name
    print(f"desk_test: {name}", flush=True)


# ---- HTTP (the bot, and a look at the emulator) ------------------------------------------

def http(method, url, body=None, headers=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            detail = json.loads(raw)
        except ValueError:
            detail = raw.decode(errors="replace")
        raise Failure(f"{method} {url}: HTTP {error.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise Failure(f"{method} {url}: {error}") from None


def service(method, path, body=None, timeout=30):
    return http(method, SERVICE_URL + path, body, {"Authorization": "Bearer " + API_KEY}, timeout)[1]


class Bot:
    """The bot's side: one handover and a cursor into its event log."""

    def __init__(self):
        self.id = None
        self.after = 0
        self.seen = []

    def start(self):
        long_line = ("The customer asked about a double charge on the March invoice. " * 60)[:3500]
        created = service("POST", "/v1/handovers", {
            "provider": PROVIDER,
            "user": {"id": "desk-user", "name": "Desk Tester", "email": "desk@example.com"},
            "transcript": [
                {"from": "user", "text": f"I was charged twice (ref {MARKER})."},
                {"from": "bot", "text": long_line},
                {"from": "user", "text": "Can I talk to a human?"},
            ],
        })
        self.id = created["id"]
        return self.id

    def wait_for(self, predicate, what):
        """Long-polls the events until one satisfies `predicate`; returns it."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = ", ".join(f"{e.get('seq')}:{e.get('type')}" for e in self.seen[-15:])
                raise Failure(f"the bot got no {what} within {TIMEOUT:.0f} s (its last events: {kinds or 'none'})")
            wait_ms = int(min(left, 5) * 1000)
            page = service("GET", f"/v1/handovers/{self.id}/events?after={self.after}&wait_ms={wait_ms}",
                           timeout=wait_ms / 1000 + 10)
            for event in page.get("events", []):
                self.seen.append(event)
                self.after = max(self.after, event.get("seq", self.after))
                if predicate(event):
                    return event
                if event.get("type") == "status":
                    raise Failure(f"the handover ended ({json.dumps(event)}) before the bot got {what}")

    def say(self, text, message_id):
        service("POST", f"/v1/handovers/{self.id}/inputs", {"type": "message", "text": text, "id": message_id})


# ---- the browser -------------------------------------------------------------------------

def browser():
    binary = env("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = env("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not binary:
        print("desk_test: no Chromium (apt-get install chromium chromium-driver, or set CHROMIUM)", file=sys.stderr)
        sys.exit(2)
    if not os.path.exists(driver_path):
        print("desk_test: no chromedriver (apt-get install chromium-driver, or set CHROMEDRIVER)", file=sys.stderr)
        sys.exit(2)
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--window-size=1280,800", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-extensions", "--lang=en-US"):
        options.add_argument(argument)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to sandbox as root (CI containers)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    # The page itself 1280×800 (a laptop screen), whatever the window decorations take.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    return driver


def wait(driver, condition, what):
    try:
        return WebDriverWait(driver, TIMEOUT, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise Failure(f"{what} (waited {TIMEOUT:.0f} s)") from None


def texts(driver, selector):
    """The text content of every element `selector` matches (scrolled out of view or not)."""
    return [(e.get_property("textContent") or "").strip() for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def message_texts(driver, sender):
    return texts(driver, f'#messages .message[data-from="{sender}"] .text')


def screenshot(driver, name):
    if SCREENSHOT_DIR and driver is not None:
        os.makedirs(SCREENSHOT_DIR, exist_ok=True)
        path = os.path.join(SCREENSHOT_DIR, name)
        try:
            driver.save_screenshot(path)
            print(f"desk_test: saved {path}")
        except WebDriverException as error:
            print(f"desk_test: no screenshot {path}: {error}", file=sys.stderr)


def console(driver):
    try:
        return [f"{e.get('level')}: {e.get('message')}" for e in driver.get_log("browser")]
    except Exception:  # noqa: BLE001 - diagnostics only
        return []


def find_conversation(known):
    """The emulator's id of the test's conversation: the one whose transcript carries MARKER
    (else the only new one, for a contact center that got no transcript)."""
    deadline = time.monotonic() + TIMEOUT
    new = []
    while time.monotonic() < deadline:
        _, views = http("GET", EMULATOR + "/_emulator/conversations")
        for view in views or []:
            texts_ = [c.get("text", "") for c in view.get("customer", []) if c.get("kind") == "message"]
            if any(MARKER in t for t in texts_):
                return view["id"]
        new = [v["id"] for v in views or [] if v["id"] not in known]
        time.sleep(0.1)
    if len(new) == 1:
        print("desk_test: warning: no conversation carries the transcript; taking the only new one", file=sys.stderr)
        return new[0]
    raise Failure(f"no conversation at the contact center carries the transcript (new ones: {new or 'none'})")


# ---- the handover ------------------------------------------------------------------------

def run(driver):
    step("reading the emulator's conversations")
    _, before = http("GET", EMULATOR + "/_emulator/conversations")
    known = {c["id"] for c in before or []}

    step(f"opening the desk at {DESK_URL}")
    driver.get(DESK_URL)
    wait(driver, ec.presence_of_element_located((By.ID, "conversations")), "the desk shows no #conversations list")
    name = wait(driver, ec.element_to_be_clickable((By.ID, "agent")), "the desk has no agent name input (#agent)")
    name.clear()
    name.send_keys(AGENT)

    step(f"the bot starts a handover to {PROVIDER}")
    bot = Bot()
    handover = bot.start()
    print(f"desk_test: handover {handover}")

    step("finding the conversation at the contact center")
    conversation = find_conversation(known)
    print(f"desk_test: conversation {conversation} at the contact center")

    step(f"waiting for conversation {conversation} in #conversations")
    selector = f'#conversations button[data-id="{conversation}"]'
    wait(driver, ec.element_to_be_clickable((By.CSS_SELECTOR, selector)),
         f"conversation {conversation} did not appear in the desk's list").click()
    wait(driver, lambda d: conversation in d.find_element(By.ID, "chat-title").text,
         f"clicking conversation {conversation} did not open it")

    step("waiting for the bot transcript on the desk")
    protocol = driver.find_element(By.ID, "protocol").text.strip()
    chunks = 2 if protocol in ("miaw", "genesys") else 1
    wait(driver, lambda d: len(message_texts(d, "bot")) >= chunks,
         f"the desk shows fewer than {chunks} bot transcript message(s) for {protocol}")
    if protocol == "miaw":
        longest = max(len(t) for t in message_texts(driver, "bot"))
        if longest > 3000:
            raise Failure(f"a MIAW transcript chunk on the desk has {longest} characters (at most 3000)")

    step("accepting on the desk (#accept)")
    wait(driver, ec.element_to_be_clickable((By.ID, "accept")), "#accept is not clickable").click()
    wait(driver, lambda d: any(t.startswith(f"{AGENT} joined") for t in texts(d, "#messages .event")),
         f"accepting did not show '{AGENT} joined' on the desk")

    step("answering on the desk (#answer, #send)")
    answer = wait(driver, ec.element_to_be_clickable((By.ID, "answer")), "#answer is not usable")
    answer.click()
    answer.send_keys(ANSWER)
    wait(driver, ec.element_to_be_clickable((By.ID, "send")), "#send is not clickable after typing").click()
    wait(driver, lambda d: ANSWER in message_texts(d, "agent"), "the sent answer did not show on the desk")
    wait(driver, lambda d: d.find_element(By.ID, "answer").get_attribute("value") == "",
         "#answer was not cleared after sending")

    step("the bot waits for the agent's answer")
    bot.wait_for(lambda e: e.get("type") == "agent_message" and e.get("text") == ANSWER,
                 f"agent_message {ANSWER!r}")

    step("the user answers; waiting for it on the desk")
    bot.say(REPLY, REPLY_ID)
    wait(driver, lambda d: REPLY in message_texts(d, "user"),
         f"the user's {REPLY!r} did not appear on the desk as a user message")
    screenshot(driver, "desk.png")

    step("ending on the desk (#end)")
    wait(driver, ec.element_to_be_clickable((By.ID, "end")), "#end is not clickable").click()
    wait(driver, lambda d: d.find_element(By.ID, "conv-state").text.strip() == "ended",
         "the desk does not show the conversation as ended")

    step("the bot waits for its final status")
    status = bot.wait_for(lambda e: e.get("type") == "status", "a status event")
    if status.get("status") != "completed":
        raise Failure(f"the handover ended with {json.dumps(status)}, not completed")

    step("the live view (/ui) lists the handover")
    driver.get(SERVICE_URL + "/ui")
    key = wait(driver, ec.element_to_be_clickable((By.ID, "key")), "the live view has no #key input")
    key.send_keys(API_KEY + Keys.ENTER)
    wait(driver, lambda d: handover in d.find_element(By.ID, "handovers").text,
         f"handover {handover} did not appear in #handovers")
    wait(driver, ec.element_to_be_clickable((By.CSS_SELECTOR, f'#handovers button[data-id="{handover}"]')),
         f"handover {handover} cannot be selected in #handovers").click()
    wait(driver, lambda d: "status" in texts(d, "#events tbody td:nth-child(2)"),
         "the live view's #events does not show the status event")
    screenshot(driver, "ui.png")


def main():
    driver = None
    try:
        step("starting headless Chromium")
        driver = browser()
        run(driver)
    except Failure as failure:
        print(f"desk_test: FAILED at '{current_step}': {failure}", file=sys.stderr)
        if driver is not None:
            print(f"desk_test: the page was {driver.current_url}", file=sys.stderr)
            for line in console(driver)[-20:]:
                print(f"desk_test: console {line}", file=sys.stderr)
        screenshot(driver, "failure.png")
        return 1
    except WebDriverException as error:
        print(f"desk_test: FAILED at '{current_step}': the browser: {error.msg or error}", file=sys.stderr)
        screenshot(driver, "failure.png")
        return 1
    except Exception:  # noqa: BLE001 - any other error fails the test with its trace
        print(f"desk_test: FAILED at '{current_step}':", file=sys.stderr)
        traceback.print_exc()
        screenshot(driver, "failure.png")
        return 1
    finally:
        if driver is not None:
            driver.quit()
    print("desk_test: passed: the desk accepted, answered, saw the user's reply and ended; the bot got completed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
