#!/usr/bin/env bash
# replicas.test.sh: deploy/'s topology reproduced on loopback with the real processes: a private
# PostgreSQL server (tests/pg.sh), two `nuri serve` replicas sharing it (--store postgresql://...)
# and one KV snapshot directory (--kv-dir), and nginx in front (its config written here, no root
# needed: -p prefix, pid and logs in the temp dir). Driven by the openai client
# (tests/serve/replicas.mjs):
#   - a conversation chained across both replicas through nginx; replica A killed with SIGKILL
#     mid-conversation; the chain continues on B, resumed from the shared snapshot; nothing lost;
#   - A restarted: a ~4000-token conversation made on B continues on A from the shared snapshot,
#     faster than recomputing one (both times printed);
#   - deploy/nginx.conf itself in front of the replicas: a request with X-Nuri-Replica goes to
#     that replica, one without goes round robin, and with the replica down to the other one;
#   - the database stopped: stateful routes answer 503 store_unavailable, chat completions and
#     /health go on; the database started again: the Responses API works again (reconnected);
#   - both replicas drain and exit 0 on SIGTERM.
# Also checks deploy/: nginx -t on its nginx.conf, haproxy -c on its haproxy.cfg, its YAML parses,
# and the paths its Dockerfile copies exist.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
. tests/pg.sh
passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

why=$(pg_missing)
command -v nginx >/dev/null || why="${why:+$why; }nginx is not installed (scripts/setup installs it)"
[ -d tests/serve/node_modules/openai ] || why="${why:+$why; }the openai npm package is not in tests/serve"
if [ -n "$why" ]; then
    echo "replicas: cannot run: $why"
    echo "0 passed, 1 failed"
    exit 1
fi

tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx's workers (nobody, when run as root) read their temp paths in here
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    [ -f "$tmp/nginx/nginx.pid" ] && kill "$(cat "$tmp/nginx/nginx.pid")" 2>/dev/null
    [ -f "$tmp/nginx2/nginx.pid" ] && kill "$(cat "$tmp/nginx2/nginx.pid")" 2>/dev/null
    pg_destroy
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- deploy/: what can be checked without Docker or Kubernetes
deploy_check() {
    local bad=""
    # nginx -t on deploy's config, its upstream names (compose services) pointed at loopback
    mkdir -p "$tmp/ngx-check/logs"
    sed -e 's/server nuri-[ab]:8080/server 127.0.0.1:9/' deploy/nginx.conf >"$tmp/ngx-check/nginx.conf"
    nginx -t -q -p "$tmp/ngx-check" -c "$tmp/ngx-check/nginx.conf" -g "pid $tmp/ngx-check/pid; error_log stderr;" \
        2>"$tmp/ngx-check/err" || bad="$bad nginx.conf: $(cat "$tmp/ngx-check/err")"
    if command -v haproxy >/dev/null; then
        sed -e 's/ nuri-[ab]:8080/ 127.0.0.1:9/' deploy/haproxy.cfg >"$tmp/haproxy.cfg"
        haproxy -c -q -f "$tmp/haproxy.cfg" >"$tmp/haproxy.err" 2>&1 || bad="$bad haproxy.cfg: $(cat "$tmp/haproxy.err")"
    fi
    python3 - <<'PY' || bad="$bad YAML"
import glob, sys, yaml
docs = {}
for f in ["deploy/docker-compose.yml"] + sorted(glob.glob("deploy/k8s/*.yaml")):
    docs[f] = [d for d in yaml.safe_load_all(open(f)) if d]
compose = docs["deploy/docker-compose.yml"][0]
assert {"postgres", "nuri-a", "nuri-b", "nginx"} <= set(compose["services"]), compose["services"].keys()
kinds = {d["kind"]: d for f, ds in docs.items() if f.startswith("deploy/k8s/") for d in ds}
assert {"Deployment", "Service", "PodDisruptionBudget"} <= set(kinds), kinds.keys()
pod = kinds["Deployment"]["spec"]["template"]["spec"]
probe = pod["containers"][0]["readinessProbe"]["httpGet"]
assert probe["path"] == "/health", probe
# the grace period must outlast nuri's own drain (--shutdown-timeout)
args = pod["containers"][0]["args"]
drain = int(args[args.index("--shutdown-timeout") + 1])
assert pod["terminationGracePeriodSeconds"] > drain, (pod["terminationGracePeriodSeconds"], drain)
PY
    # every path the Dockerfile copies from the repository exists
    local p
    for p in $(sed -n 's/^COPY \(--chown=[^ ]* \)\{0,1\}\([^-][^ ]*\) .*/\2/p' deploy/Dockerfile); do
        [ -e "$p" ] || bad="$bad Dockerfile copies missing $p"
    done
    grep -A2 '^HEALTHCHECK' deploy/Dockerfile | grep -q 'http://127.0.0.1:8080/health' || bad="$bad Dockerfile: no HEALTHCHECK on /health"
    grep -q '^USER ' deploy/Dockerfile || bad="$bad Dockerfile: runs as root"
    [ -z "$bad" ] && return 0
    echo "$bad"
    return 1
}
if out=$(deploy_check 2>&1); then ok "deploy/: nginx -t, haproxy -c, the YAML and the Dockerfile's paths check out"; else fail "deploy/:$out"; fi

# ---- PostgreSQL, the model, two replicas, nginx
pg_start || { fail "PostgreSQL did not start"; finish; }
MODEL="$(dirname "$NURI")/tests/replicas-llama-tiny.gguf"
if [ ! -f "$MODEL" ]; then
    mkdir -p "$(dirname "$MODEL")"
    "$NURI" mkmodel --arch llama --shape tiny --type Q8_0 --ctx 8192 "$MODEL.tmp" >/dev/null &&
        mv "$MODEL.tmp" "$MODEL" || { fail "mkmodel"; finish; }
fi
mkdir -p "$tmp/kv"
PORT_A=$(free_port)
PORT_B=$(free_port)
# start_replica NAME PORT: sets PID_<NAME>
start_replica() {
    "$NURI" serve -m "$MODEL" --name nuri-tiny --port "$2" --api-key replica-key --api-key other-key \
        --max-seqs 2 --ctx 16384 --store "$PG_URL" --kv-dir "$tmp/kv" --replica-id "nuri-$1" \
        --shutdown-timeout 10 >"$tmp/$1.out" 2>>"$tmp/$1.err" &
    pids+=($!)
    eval "PID_${1^^}=$!"
    for _ in $(seq 1 400); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/health")" = 200 ] && return 0
        sleep 0.05
    done
    fail "replica $1 did not become healthy: $(tail -n 5 "$tmp/$1.err")"
    finish
}
start_replica a "$PORT_A"
start_replica b "$PORT_B"
URL_A=http://127.0.0.1:$PORT_A
URL_B=http://127.0.0.1:$PORT_B

PORT_LB=$(free_port)
mkdir -p "$tmp/nginx/logs" "$tmp/nginx/tmp"
chmod 777 "$tmp/nginx/tmp"
cat >"$tmp/nginx/nginx.conf" <<NGX
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/tmp/body;
    proxy_temp_path $tmp/nginx/tmp/proxy;
    fastcgi_temp_path $tmp/nginx/tmp/fastcgi;
    uwsgi_temp_path $tmp/nginx/tmp/uwsgi;
    scgi_temp_path $tmp/nginx/tmp/scgi;
    upstream nuri {
        # round robin on purpose: consecutive turns land on different replicas
        server 127.0.0.1:$PORT_A max_fails=1 fail_timeout=30s;
        server 127.0.0.1:$PORT_B max_fails=1 fail_timeout=30s;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:$PORT_LB;
        location / {
            proxy_pass http://nuri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout;
        }
    }
}
NGX
if ! nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx/start.err"; then
    fail "nginx did not start: $(cat "$tmp/nginx/start.err")"
    finish
fi
LB=http://127.0.0.1:$PORT_LB
for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$LB/health")" = 200 ] && break
    sleep 0.05
done

# ---- the chain across replicas, A killed
run_node() { # PHASE ARGS...: its ok/FAIL/time lines counted
    local line
    timeout 600 node tests/serve/replicas.mjs "$@" >"$tmp/node.out" 2>&1
    while IFS= read -r line; do
        case "$line" in
        ok*) echo "$line"; passed=$((passed + 1)) ;;
        time*) echo "$line" ;;
        FAIL*) echo "$line"; failed=$((failed + 1)) ;;
        *) echo "$line" ;;
        esac
    done <"$tmp/node.out"
}
{
    run_node chain "$LB" "$URL_A" "$URL_B" "$PID_A" "$tmp/kv" "$tmp/state.json"
    wait "$PID_A"
} 2>/dev/null # without the shell's "Killed" line
[ -f "$tmp/state.json" ] || { fail "the chain phase ended early"; finish; }

# ---- A restarted (as a crashed pod is): resume from the shared snapshot vs recompute
start_replica a "$PORT_A"
words=500 # ~4,400 tokens; under the sanitizers ~1,700 (recomputing 4,400 takes 30 s there)
case "$NURI" in *san*) words=200 ;; esac
run_node resume "$URL_A" "$URL_B" "$tmp/kv" "$words"

# ---- deploy/nginx.conf itself, its upstreams pointed at the replicas: affinity with fallback
PORT_LB2=$(free_port)
mkdir -p "$tmp/nginx2/logs"
sed -e "s/server nuri-a:8080/server 127.0.0.1:$PORT_A/; s/server nuri-b:8080/server 127.0.0.1:$PORT_B/" \
    -e "s/listen 8080;/listen 127.0.0.1:$PORT_LB2;/" deploy/nginx.conf >"$tmp/nginx2/nginx.conf"
if ! nginx -p "$tmp/nginx2" -c "$tmp/nginx2/nginx.conf" \
    -g "pid $tmp/nginx2/nginx.pid; error_log $tmp/nginx2/logs/error.log;" 2>"$tmp/nginx2/start.err"; then
    fail "nginx with deploy/nginx.conf did not start: $(cat "$tmp/nginx2/start.err")"
    finish
fi
LB2=http://127.0.0.1:$PORT_LB2
# via_lb2 [HINT]: the replicas that answered 4 requests through it, one a line
via_lb2() {
    local h=()
    [ -n "${1:-}" ] && h=(-H "X-Nuri-Replica: $1")
    for _ in 1 2 3 4; do
        curl -s -o /dev/null -D - "${h[@]}" -H "Authorization: Bearer replica-key" "$LB2/v1/models" |
            tr -d '\r' | sed -n 's/^[Xx]-[Nn]uri-[Rr]eplica: //p'
    done | sort | uniq | tr '\n' ' '
}
for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$LB2/health")" = 200 ] && break
    sleep 0.05
done
aff_a=$(via_lb2 nuri-a)
aff_b=$(via_lb2 nuri-b)
aff_any=$(via_lb2)
if [ "$aff_a" = "nuri-a " ] && [ "$aff_b" = "nuri-b " ] && [ "$aff_any" = "nuri-a nuri-b " ]; then
    ok "deploy/nginx.conf: X-Nuri-Replica sends a request back to its replica, none goes round robin"
else
    fail "deploy/nginx.conf affinity: hint nuri-a -> [$aff_a], nuri-b -> [$aff_b], none -> [$aff_any]"
fi

# ---- the database goes away and comes back
last=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["last"])' "$tmp/state.json")
auth=(-H "Authorization: Bearer replica-key" -H "Content-Type: application/json")
pg_stop
code_resp=$(curl -s -o "$tmp/r503" -w '%{http_code}' "${auth[@]}" "$URL_B/v1/responses" \
    -d '{"input": "still there?", "previous_response_id": "'"$last"'", "max_output_tokens": 2}')
code_new=$(curl -s -o "$tmp/r503b" -w '%{http_code}' "${auth[@]}" "$URL_A/v1/responses" \
    -d '{"input": "a new conversation", "max_output_tokens": 2}')
code_get=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$URL_A/v1/responses/$last")
code_chat=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$LB/v1/chat/completions" \
    -d '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}')
code_health=$(curl -s -o /dev/null -w '%{http_code}' "$URL_B/health")
if [ "$code_resp$code_new$code_get" = 503503503 ] && [ "$code_chat$code_health" = 200200 ] &&
    grep -q '"code":"store_unavailable"' "$tmp/r503" && grep -q '"code":"store_unavailable"' "$tmp/r503b"; then
    ok "the database down: the Responses API answers 503 store_unavailable, chat completions and /health go on"
else
    fail "database down: responses $code_resp/$code_new/$code_get chat $code_chat health $code_health: $(cat "$tmp/r503")"
fi
pg_start_again
code_back=""
for url in "$URL_A" "$URL_B"; do
    code_back="$code_back$(curl -s -o "$tmp/back" -w '%{http_code}' "${auth[@]}" "$url/v1/responses" \
        -d '{"input": "back again?", "previous_response_id": "'"$last"'", "max_output_tokens": 2}')"
done
if [ "$code_back" = 200200 ]; then
    ok "the database back: both replicas reconnect and continue the conversation"
else
    fail "database back: $code_back $(cat "$tmp/back")"
fi

# ---- graceful drain; with A gone, deploy/nginx.conf sends A's conversations to B
rc_a=0; rc_b=0
kill -TERM "$PID_A"
wait "$PID_A" || rc_a=$?
aff_down=$(via_lb2 nuri-a)
if [ "$aff_down" = "nuri-b " ]; then
    ok "deploy/nginx.conf: with its replica down, a hinted request falls back to the other"
else
    fail "deploy/nginx.conf fallback: hint nuri-a with A down -> [$aff_down]"
fi
kill -TERM "$PID_B"
wait "$PID_B" || rc_b=$?
if [ "$rc_a$rc_b" = 00 ]; then ok "both replicas drain and exit 0 on SIGTERM"; else fail "SIGTERM: exit $rc_a / $rc_b: $(tail -n 3 "$tmp/a.err" "$tmp/b.err")"; fi
finish
