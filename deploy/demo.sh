#!/usr/bin/env bash
# `make demo`: run `ragward serve` on the embedded default and show how to call it.
# Expects RAGWARD_JWT_SECRET in the environment (the Makefile keeps one in .ragward/dev-secret).
set -euo pipefail
cd "$(dirname "$0")/.."
RAGWARD=.venv/bin/ragward
PORT="${RAGWARD_PORT:-8000}"
URL="http://127.0.0.1:${PORT}"

if (echo >"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
  echo "error: port ${PORT} is already in use; run with RAGWARD_PORT=<free port> make demo" >&2
  exit 1
fi

"$RAGWARD" --log-format console --log-level warning serve --port "$PORT" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT INT TERM

echo "starting ragward serve on ${URL} ..." >&2
for _ in $(seq 1 240); do
  if ! kill -0 "$pid" 2>/dev/null; then echo "error: ragward serve exited" >&2; exit 1; fi
  if curl -fsS "${URL}/ready" >/dev/null 2>&1; then break; fi
  sleep 0.5
done
curl -fsS "${URL}/ready" >/dev/null || { echo "error: ragward serve did not become ready" >&2; exit 1; }

TOKEN="$("$RAGWARD" token --sub demo-user --tenant demo --role batch --role compliance --ttl 86400)"
cat <<MSG

  ragward is running at ${URL}   (Ctrl-C stops it)

  dashboard:  ${URL}/dashboard
  metrics:    ${URL}/metrics
  API schema: ${URL}/schema

  a dev token (tenant "demo", roles batch + compliance, valid 24 h):

    export TOKEN=${TOKEN}

  ask a question:

    curl -s ${URL}/v1/query -H "Authorization: Bearer \$TOKEN" \\
         -H 'Content-Type: application/json' \\
         -d '{"question": "How do I submit an expense claim?"}'

    curl -s ${URL}/v1/query -H "Authorization: Bearer \$TOKEN" \\
         -H 'Content-Type: application/json' \\
         -d '{"question": "公司的年假政策是什么?"}'

  stream an answer, OpenAI-style (docs/openai.md):

    curl -N ${URL}/v1/chat/completions -H "Authorization: Bearer \$TOKEN" \\
         -H 'Content-Type: application/json' \\
         -d '{"model": "default", "stream": true, "stream_options": {"include_usage": true},
              "messages": [{"role": "user", "content": "How do I submit an expense claim?"}]}'

  or with the openai SDK (pip install openai):

    from openai import OpenAI
    client = OpenAI(base_url="${URL}/v1", api_key="${TOKEN}")  # the dev token is the api_key
    stream = client.chat.completions.create(model="default", stream=True,
        messages=[{"role": "user", "content": "How do I submit an expense claim?"}])
    for chunk in stream:
        print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="", flush=True)

  your quota:     curl -s ${URL}/v1/usage -H "Authorization: Bearer \$TOKEN"
  the audit log:  curl -s ${URL}/v1/audit -H "Authorization: Bearer \$TOKEN"

MSG
wait "$pid"
