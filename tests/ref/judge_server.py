#!/usr/bin/python3
"""judge_server.py — a fake LLM judge for the oracle tests and benchmark, speaking two protocols.

    /usr/bin/python3 tests/ref/judge_server.py --port-file F --log L [--delay S] [--lifetime S]

Listens on 127.0.0.1 (a free port, written with the pid to F as "port pid"), answers
POST /v1/chat/completions (OpenAI) and POST /v1/messages (Anthropic), 404 elsewhere, and exits by
itself after --lifetime seconds or on POST /shutdown.

The Anthropic route holds requests to what the Messages API demands, so a client that gets them
wrong fails here as it would there (400, in Anthropic's error shape {"type": "error", "error":
{"type", "message"}}): the anthropic-version header must be 2023-06-01, max_tokens an integer,
the system prompt the top-level "system" field (a "system" role in messages is refused). Its
replies hold content blocks; the answer is the "text" blocks'.

It judges deterministically: of the two texts under "Summary A:"/"Summary B:" (or "Review A:"/
"Review B:", or "Continuation A:"/"Continuation B:") it prefers the one with more occurrences of
"good" (A on a tie), and answers "Comparison: ...\\nPreferred: X" with a `usage` block.

Faults are asked for by the prompt itself, so they do not depend on request order: a marker
"[fault:KINDxN]" in the user message makes the first N requests with that exact message fail:
  429      429 with Retry-After: --retry-after     500   500 Internal Server Error
  hang     sleeps --hang seconds before answering   drop  closes the connection (RST), no reply
  badjson  200 with a body that is not JSON         wrong 200, "Preferred: C"
  empty    200 with empty content                   nopref 200, no "Preferred:" line
  denied   401 (not worth retrying)                 alwaysA 200, "Preferred: A" whatever the texts
  429ms    429 with retry-after-ms: --retry-after   echo  401 whose body echoes the key's header
  overloaded 529 (Anthropic's "overloaded_error")   blocks 200, the answer split over two text
                                                           blocks after a thinking block
Error bodies take the route's protocol's shape. A model named "fault:KIND" (denied, forbidden: 403, nomodel: 404 "model not found", echo) gets
that answer to every request, as a wrong key or model name would.

Every request is logged to --log as one JSON line on arrival: the Authorization header in its own
field "auth", the x-api-key header in "api_key", the other headers, the body, the action taken, and "in_flight": how many requests
(this one included) the server was handling at that moment, so tests count concurrency instead of
timing it.
"""
import argparse
import hashlib
import json
import os
import re
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT = re.compile(r"\[fault:([a-zA-Z0-9]+)x(\d+)\]")
SECTIONS = re.compile(r"(?:Summary|Continuation|Review) A:\n(.*?)\n\n(?:Summary|Continuation|Review) B:\n(.*?)\n\n", re.S)


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.attempts = {}
        self.seq = 0
        self.in_flight = 0
        self.log = open(args.log, "a") if args.log else None
        self.stop = threading.Event()

    def arrive(self, user):
        """Counts this message's requests; returns the request number, this message's try and
        the requests in flight with this one."""
        key = hashlib.sha256(user.encode()).hexdigest()
        with self.lock:
            self.seq += 1
            self.in_flight += 1
            self.attempts[key] = self.attempts.get(key, 0) + 1
            return self.seq, self.attempts[key], self.in_flight

    def leave(self):
        with self.lock:
            self.in_flight -= 1

    def write_log(self, entry):
        if not self.log:
            return
        with self.lock:
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()


def verdict(user, fault):
    if fault == "alwaysA":
        return "Comparison: A comes first.\nPreferred: A"
    m = SECTIONS.search(user)
    if not m:
        return None
    ga, gb = m.group(1).count("good"), m.group(2).count("good")
    pref = "A" if ga >= gb else "B"
    return f"Comparison: {pref} says good more often ({ga} vs {gb}).\nPreferred: {pref}"


class OpenAI:
    """POST .../chat/completions"""
    @staticmethod
    def user(req):
        return [m["content"] for m in req["messages"] if m["role"] == "user"][-1]

    @staticmethod
    def check(req, headers):
        return None

    @staticmethod
    def error(kind, message):
        return json.dumps({"error": {"message": message, "type": kind}})

    @staticmethod
    def answer(req, content, user):
        if isinstance(content, list):
            content = "".join(content)
        return json.dumps({
            "id": "chatcmpl-test", "object": "chat.completion", "model": req.get("model", ""),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": len(content) // 4,
                      "total_tokens": len(user) // 4 + len(content) // 4},
        })


class Anthropic:
    """POST .../messages"""
    @staticmethod
    def user(req):
        m = [m["content"] for m in req["messages"] if m["role"] == "user"][-1]
        if isinstance(m, list):  # content blocks
            m = "".join(b["text"] for b in m if b.get("type") == "text")
        return m

    @staticmethod
    def check(req, headers):
        """What the Messages API would refuse with a 400, or None."""
        if headers.get("anthropic-version") != "2023-06-01":
            return "anthropic-version: header is required (2023-06-01)"
        if not isinstance(req.get("max_tokens"), int) or isinstance(req.get("max_tokens"), bool):
            return "max_tokens: Field required"
        if any(m.get("role") not in ("user", "assistant") for m in req["messages"]):
            return "messages: Unexpected role: the system prompt is the top-level system field"
        if "system" in req and not isinstance(req["system"], str):
            return "system: Input should be a valid string"
        return None

    @staticmethod
    def error(kind, message):
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}})

    @staticmethod
    def answer(req, content, user):
        texts = content if isinstance(content, list) else [content]
        blocks = [{"type": "thinking", "thinking": "Preferred: B, surely", "signature": "x"}] \
            if isinstance(content, list) else []
        blocks += [{"type": "text", "text": t} for t in texts]
        return json.dumps({
            "id": "msg_test", "type": "message", "role": "assistant", "model": req.get("model", ""),
            "content": blocks, "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": len(user) // 4, "output_tokens": len("".join(texts)) // 4},
        })


ROUTES = {"/v1/chat/completions": OpenAI, "/v1/messages": Anthropic}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        st = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/shutdown":
            self.reply(200, "{}")
            st.stop.set()
            return
        proto = ROUTES.get(self.path)
        if proto is None:
            self.reply(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
            return
        try:
            req = json.loads(raw)
            user = proto.user(req)
            bad = proto.check(req, self.headers)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            bad = "bad request"
        if bad:
            self.reply(400, proto.error("invalid_request_error", bad))
            return
        seq, attempt, in_flight = st.arrive(user)
        m = FAULT.search(user)
        fault = m.group(1) if m and attempt <= int(m.group(2)) else None
        model = str(req.get("model", ""))
        if model.startswith("fault:"):
            fault = model[len("fault:"):]
        action = fault or "ok"
        st.write_log({
            "seq": seq, "time": time.time(), "path": self.path, "attempt": attempt, "in_flight": in_flight,
            "action": action, "auth": self.headers.get("Authorization"), "api_key": self.headers.get("x-api-key"),
            "headers": {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "x-api-key")},
            "body": raw.decode("utf-8", "replace"),
        })
        try:
            self.act(proto, action, req, user)
        finally:
            st.leave()

    def act(self, proto, action, req, user):
        args = self.server.state.args
        err = proto.error
        if action == "429":
            self.reply(429, err("rate_limit_error", "rate limited"), [("Retry-After", args.retry_after)])
        elif action == "500":
            self.reply(500, err("api_error", "server error"))
        elif action == "overloaded":
            self.reply(529, err("overloaded_error", "Overloaded"))
        elif action == "429ms":
            self.reply(429, err("rate_limit_error", "rate limited"), [("retry-after-ms", args.retry_after)])
        elif action == "denied":
            self.reply(401, err("authentication_error", "invalid api key"))
        elif action == "echo":
            sent = self.headers.get("Authorization") or self.headers.get("x-api-key") or ""
            self.reply(401, err("authentication_error", f"invalid api key in header: {sent}"))
        elif action == "forbidden":
            self.reply(403, err("permission_error", "this key may not use this model"))
        elif action == "nomodel":
            self.reply(404, err("not_found_error", f"The model `{req.get('model')}` does not exist"))
        elif action == "drop":
            # SO_LINGER 0: close() sends a reset, as a crashing proxy would.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif action == "badjson":
            self.reply(200, '{"choices": [{"message": {"content": "Preferred: A"')
        elif action in ("wrong", "empty", "nopref"):
            text = {"wrong": "Comparison: both are fine.\nPreferred: C", "empty": "",
                    "nopref": "Comparison: I like the first one."}[action]
            self.reply(200, proto.answer(req, text, user))
        else:
            time.sleep(args.hang if action == "hang" else args.delay)
            content = verdict(user, action)
            if content is None:
                self.reply(400, err("invalid_request_error", "no A/B sections in the prompt"))
            else:
                if action == "blocks":  # the same answer, in two text blocks
                    cut = content.index("\nPreferred:")
                    content = [content[:cut], content[cut:]]
                self.reply(200, proto.answer(req, content, user))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 16+ clients connect at once; the default 5 drops SYNs

    def handle_error(self, request, client_address):
        pass  # clients that gave up (timeouts) and dropped sockets are expected here


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--hang", type=float, default=3.0)
    ap.add_argument("--retry-after", default="1")
    ap.add_argument("--lifetime", type=float, default=120.0)
    args = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.state = State(args)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{srv.server_address[1]} {os.getpid()}\n")
    os.rename(tmp, args.port_file)
    srv.state.stop.wait(args.lifetime)
    srv.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
