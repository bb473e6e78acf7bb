#!/usr/bin/env bash
# `make run`: migrate a local SQLite database, mint demo tokens, start jitgate with the
# example policy. Tokens are written to .demo-tokens (source it to use the CLI); set
# DEMO_TOKENS, JITGATE_DATABASE_URL, JITGATE_POLICY or PORT to put things elsewhere. Mails
# to approvers are caught on 127.0.0.1:8025 and kept in .demo-mail/new/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JG="$ROOT/.venv/bin/jitgate"
export JITGATE_DATABASE_URL="${JITGATE_DATABASE_URL:-sqlite:///$ROOT/jitgate.db}"
export JITGATE_POLICY="${JITGATE_POLICY:-$ROOT/examples/policy.yaml}"
TOKENS="${DEMO_TOKENS:-$ROOT/.demo-tokens}"
PORT="${PORT:-8080}"
# One-click links are signed with this key; it must survive restarts (and be the same on
# every replica) or the links already sent stop working. Generated once, kept with the demo
# tokens (.demo-tokens, mode 600, git-ignored), never printed.
if [ -z "${JITGATE_LINK_SECRET:-}" ]; then
  JITGATE_LINK_SECRET="$(sed -n 's/^export JITGATE_LINK_SECRET=//p' "$TOKENS" 2>/dev/null || true)"
  [ -n "$JITGATE_LINK_SECRET" ] || JITGATE_LINK_SECRET="$("$ROOT/.venv/bin/python" -c \
    'import secrets; print(secrets.token_urlsafe(32))')"
fi
export JITGATE_LINK_SECRET

# The example policy's links point at port 8080; on another PORT, a copy points at it.
if [ "$PORT" != 8080 ] && [ "$JITGATE_POLICY" = "$ROOT/examples/policy.yaml" ]; then
  sed "s|^  public_url: http://127.0.0.1:8080|  public_url: http://127.0.0.1:$PORT|" \
    "$JITGATE_POLICY" > "$ROOT/.demo-policy.yaml"
  export JITGATE_POLICY="$ROOT/.demo-policy.yaml"
fi

$JG policy check "$JITGATE_POLICY"
$JG db upgrade

# The example policy mails approvers through 127.0.0.1:8025: a local catcher keeps each mail,
# with its one-click links, as a file in .demo-mail/new/ (unless something listens there).
MAIL_NOTE="mail:     something already listens on 127.0.0.1:8025; mails go there"
if ! (exec 3<>/dev/tcp/127.0.0.1/8025) 2>/dev/null; then
  "$ROOT/.venv/bin/python" -m aiosmtpd -n -l 127.0.0.1:8025 \
    -c aiosmtpd.handlers.Mailbox "$ROOT/.demo-mail" &
  CATCHER=$!
  trap 'kill "$CATCHER" 2>/dev/null || true' EXIT
  MAIL_NOTE="mail:     each message (with its Approve/Deny/View links) is a file in .demo-mail/new/"
fi

umask 077
: > "$TOKENS"
for who in jane.doe@example.com sam@example.com sue@example.com mark.lee@example.com \
           priya@example.com lee@example.com dana@example.com sec@example.com; do
  var="TOKEN_$(echo "${who%%@*}" | tr '.a-z-' '_A-Z_')"
  echo "export $var=$($JG token create "$who")" >> "$TOKENS"
done
echo "export JITGATE_LINK_SECRET=$JITGATE_LINK_SECRET" >> "$TOKENS"
echo "export TOKEN_GATEWAY=$($JG token create --service demo-gateway)" >> "$TOKENS"
ONCALL=$($JG policy oncall sre)
echo "export TOKEN_SRE_ONCALL=$(grep "TOKEN_$(echo "${ONCALL%%@*}" | tr '.a-z-' '_A-Z_')=" "$TOKENS" | cut -d= -f2)" >> "$TOKENS"
echo "export JITGATE_SERVER=http://127.0.0.1:$PORT" >> "$TOKENS"
echo "export JITGATE_POLICY=$JITGATE_POLICY" >> "$TOKENS"
echo "export JITGATE_DATABASE_URL=$JITGATE_DATABASE_URL" >> "$TOKENS"
echo "export PATH=$ROOT/.venv/bin:\$PATH" >> "$TOKENS"

cat <<MSG

jitgate is starting at http://127.0.0.1:$PORT  (API docs: http://127.0.0.1:$PORT/docs)
policy:   $JITGATE_POLICY
database: $JITGATE_DATABASE_URL
$MAIL_NOTE

Demo tokens (also in $TOKENS; run: source $TOKENS):
$(grep TOKEN_ "$TOKENS" | sed 's/^export /  /')

Try:  source $TOKENS
      JITGATE_TOKEN=\$TOKEN_JANE_DOE jitgate request sre-oncall --for 2h --reason "INC-12345"

MSG
$JG serve --port "$PORT"
