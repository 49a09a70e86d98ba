"""A Flask app that asks `memfit serve` for chat answers through the OpenAI client.

    memfit serve --manifest models.yaml &          # on 127.0.0.1:8080
    memfit monitor -- python3 flask_app.py         # the channel for this app

It uses the memfit package three ways: /health reports the monitor's level,
requests are refused with 503 while memory is critical (rather than being
OOM-killed mid-request), and a watcher frees this process's memory when the
level reaches warning; `memfit cleanup --pid PID` reaches it too.
Needs `flask` and `openai` (pip install flask openai).
"""

import os

import memfit
from flask import Flask, jsonify, request
from openai import OpenAI

app = Flask(__name__)
client = OpenAI(
    base_url=os.environ.get("MEMFIT_URL", "http://127.0.0.1:8080") + "/v1",
    api_key=os.environ.get("MEMFIT_API_KEY", "unused"),
)
MODEL = os.environ.get("MEMFIT_MODEL", "qwen")


def free_memory(p):
    r = memfit.cleanup()
    app.logger.warning(
        "memory %s (%.0f%%): freed %d bytes (%s)", p.level, p.percent, r["freed_bytes"], ",".join(r["actions"])
    )


@app.route("/health")
def health():
    p = memfit.pressure()
    return jsonify(
        {"level": p.level if p else "unknown", "percent": p.percent if p else None, "stale": p.stale if p else None}
    )


@app.route("/chat", methods=["POST"])
def chat():
    p = memfit.pressure()
    if p is not None and not p.stale and p.at_least("critical"):
        return jsonify({"error": "memory is %s, try again shortly" % p.level}), 503
    prompt = (request.get_json(silent=True) or {}).get("prompt", "")
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=128
    )
    return jsonify({"answer": answer.choices[0].message.content})


if __name__ == "__main__":
    memfit.on_pressure(free_memory, level="warning", interval=2.0)
    memfit.answer_cleanup_requests()
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
