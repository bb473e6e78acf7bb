#!/usr/bin/env bash
# `make run`: migrate a local SQLite database, mint demo tokens, start jitgate with the
# example policy. Tokens are written to .demo-tokens (source it to use the CLI); set
# DEMO_TOKENS, JITGATE_DATABASE_URL, JITGATE_POLICY or PORT to put things elsewhere. Mails
# to approvers are caught on 127.0.0.1:$MAIL_PORT (8025) and kept in .demo-mail/new/.
#
# Invariants: a busy PORT stops the demo before anything is minted or printed; the demo
# serves its own copy of the example policy (.demo-policy.yaml beside the tokens), rewritten
# on every run for PORT and MAIL_PORT; a re-run on the same database keeps the demo tokens
# of the run before while they all work, and otherwise revokes those that still do before
# minting new ones; closing the terminal, Ctrl-C or SIGTERM stops the server and the mail
# catcher this script started (nothing is left holding the port).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JG="$ROOT/.venv/bin/jitgate"
PY="$ROOT/.venv/bin/python"
EXAMPLE="$ROOT/examples/policy.yaml"
export JITGATE_DATABASE_URL="${JITGATE_DATABASE_URL:-sqlite:///$ROOT/jitgate.db}"
TOKENS="${DEMO_TOKENS:-$ROOT/.demo-tokens}"
PORT="${PORT:-8080}"
MAIL_PORT="${MAIL_PORT:-8025}"

for name in PORT MAIL_PORT; do
  value="${!name}"
  if ! [[ "$value" =~ ^[0-9]+$ ]] || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
    echo "error: $name must be a port number (1-65535), not '$value'" >&2
    exit 1
  fi
done

# jitgate serve binds 127.0.0.1:PORT as this does; a port already taken (often by an
# earlier `make run` still serving) stops here, before a token is minted.
if ! "$PY" -c 'import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))' "$PORT" 2>/dev/null; then
  echo "error: port $PORT is in use (by an earlier \`make run\`?): stop it, or pick another with PORT=" >&2
  exit 1
fi

# One-click links are signed with this key; it must survive restarts (and be the same on
# every replica) or the links already sent stop working. Generated once, kept with the demo
# tokens (.demo-tokens, mode 600, git-ignored), never printed.
if [ -z "${JITGATE_LINK_SECRET:-}" ]; then
  JITGATE_LINK_SECRET="$(sed -n 's/^export JITGATE_LINK_SECRET=//p' "$TOKENS" 2>/dev/null || true)"
  [ -n "$JITGATE_LINK_SECRET" ] || JITGATE_LINK_SECRET="$("$PY" -c \
    'import secrets; print(secrets.token_urlsafe(32))')"
fi
export JITGATE_LINK_SECRET

# The example policy, its links pointing at PORT and its mail at MAIL_PORT. A copy made by
# an earlier run (JITGATE_POLICY from a sourced .demo-tokens) is made again for this one; a
# policy of your own is served as it is.
DEMO_POLICY="$(dirname "$TOKENS")/.demo-policy.yaml"
case "${JITGATE_POLICY:-}" in
  "" | "$EXAMPLE" | .demo-policy.yaml | */.demo-policy.yaml)
    sed -e "s|^  public_url: http://127.0.0.1:8080 |  public_url: http://127.0.0.1:$PORT |" \
      -e "s|^      smtp_port: 8025\$|      smtp_port: $MAIL_PORT|" "$EXAMPLE" > "$DEMO_POLICY"
    grep -q "^  public_url: http://127.0.0.1:$PORT " "$DEMO_POLICY" \
      && grep -q "^      smtp_port: $MAIL_PORT\$" "$DEMO_POLICY" \
      || { echo "error: $EXAMPLE no longer has the public_url or smtp_port this script rewrites" >&2; exit 1; }
    export JITGATE_POLICY="$DEMO_POLICY"
    ;;
esac

$JG policy check "$JITGATE_POLICY"
$JG db upgrade

PEOPLE="jane.doe@example.com sam@example.com sue@example.com mark.lee@example.com
        priya@example.com lee@example.com dana@example.com sec@example.com"
token_var() { echo "TOKEN_$(echo "${1%%@*}" | tr '.a-z-' '_A-Z_')"; }

# "keep" when the previous run's tokens (same database) all still work; otherwise the ids
# of those of them that still work, to be revoked.
previous_tokens() {
  [ -f "$TOKENS" ] || return 0
  [ "$(sed -n 's/^export JITGATE_DATABASE_URL=//p' "$TOKENS")" = "$JITGATE_DATABASE_URL" ] \
    || return 0
  local names=(TOKEN_GATEWAY) who
  for who in $PEOPLE; do names+=("$(token_var "$who")"); done
  $JG token ls --json | "$PY" -c 'import hashlib, json, re, sys
found = dict(re.findall(r"^export (TOKEN_\w+)=(\S+)$", open(sys.argv[1]).read(), re.M))
live = {token["id"] for token in json.load(sys.stdin)}
ids = {hashlib.sha256(value.encode()).hexdigest()[:12] for value in found.values()}
print("keep" if set(sys.argv[2:]) <= found.keys() and ids <= live else " ".join(ids & live))' \
    "$TOKENS" "${names[@]}"
}

umask 077
PREVIOUS="$(previous_tokens)"
NEW="$TOKENS.new"
: > "$NEW"
if [ "$PREVIOUS" = keep ]; then
  grep '^export TOKEN_' "$TOKENS" | grep -v '^export TOKEN_SRE_ONCALL=' >> "$NEW"
  TOKENS_NOTE="kept from the previous run"
else
  for id in $PREVIOUS; do $JG token revoke "$id" > /dev/null; done
  for who in $PEOPLE; do
    echo "export $(token_var "$who")=$($JG token create "$who")" >> "$NEW"
  done
  echo "export TOKEN_GATEWAY=$($JG token create --service demo-gateway)" >> "$NEW"
  TOKENS_NOTE="new"
  [ -z "$PREVIOUS" ] || TOKENS_NOTE="new; those of the previous run are revoked"
fi
ONCALL=$($JG policy oncall sre)
echo "export TOKEN_SRE_ONCALL=$(sed -n "s/^export $(token_var "$ONCALL")=//p" "$NEW")" >> "$NEW"
{
  echo "export JITGATE_LINK_SECRET=$JITGATE_LINK_SECRET"
  echo "export JITGATE_SERVER=http://127.0.0.1:$PORT"
  echo "export JITGATE_POLICY=$JITGATE_POLICY"
  echo "export JITGATE_DATABASE_URL=$JITGATE_DATABASE_URL"
  echo "export PATH=$ROOT/.venv/bin:\$PATH"
} >> "$NEW"
mv "$NEW" "$TOKENS"

# What this script starts, it stops: on exit, and when the terminal closes (HUP), on
# Ctrl-C (INT) or on SIGTERM. jitgate serve stops gracefully on SIGTERM.
SERVER=""
CATCHER=""
stop() {
  local pid
  for pid in $SERVER $CATCHER; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $SERVER $CATCHER; do wait "$pid" 2>/dev/null || true; done
  SERVER=""
  CATCHER=""
}
trap stop EXIT
trap 'stop; exit 129' HUP
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

# The policy mails approvers through 127.0.0.1:MAIL_PORT: a local catcher keeps each mail,
# with its one-click links, as a file in .demo-mail/new/ (unless something listens there).
MAIL_NOTE="mail:     something already listens on 127.0.0.1:$MAIL_PORT; mails go there"
if ! (exec 3<>"/dev/tcp/127.0.0.1/$MAIL_PORT") 2>/dev/null; then
  "$PY" -m aiosmtpd -n -l "127.0.0.1:$MAIL_PORT" \
    -c aiosmtpd.handlers.Mailbox "$ROOT/.demo-mail" &
  CATCHER=$!
  MAIL_NOTE="mail:     each message (with its Approve/Deny/View links) is a file in .demo-mail/new/"
fi

cat <<MSG

jitgate is starting at http://127.0.0.1:$PORT  (API docs: http://127.0.0.1:$PORT/docs)
policy:   $JITGATE_POLICY
database: $JITGATE_DATABASE_URL
$MAIL_NOTE

Demo tokens ($TOKENS_NOTE; also in $TOKENS, run: source $TOKENS):
$(grep TOKEN_ "$TOKENS" | sed 's/^export /  /')

Try:  source $TOKENS
      JITGATE_TOKEN=\$TOKEN_JANE_DOE jitgate request sre-oncall --for 2h --reason "INC-12345"

MSG
$JG serve --port "$PORT" &
SERVER=$!
status=0
wait "$SERVER" || status=$?
SERVER=""
exit "$status"
