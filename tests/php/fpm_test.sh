#!/usr/bin/env bash
# A real php-fpm (4 static workers) running tests/php/fpm/app.php with the fae extension,
# driven by cgi-fcgi. Checks: 500 requests keep memcached's curr_connections bounded (each
# worker's persistent client reuses its connections), values stay correct across workers and
# across a worker restart (SIGUSR2 reload), a route config's local near cache lives per worker
# across requests, a getOrSet storm computes once across workers (and a fatal error inside
# \$compute leaves its worker healthy), concurrent requests on one session id serialize on
# the lock, and a request dying on a fatal error releases its lock. A second pool runs an
# unchanged php-memcached application (tests/php/fpm/memcached_app.php: `new Memcached`,
# session.save_handler = memcached) configured by ini values only. Prints "N passed, N failed".
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
EXT="${FAE_PHP_EXT:-$ROOT/target/debug/libfae_php.so}"
FPM="$(command -v php-fpm8.2 || command -v php-fpm)"
TMP="$(mktemp -d)"
PASSED=0; FAILED=0
ok() { PASSED=$((PASSED+1)); }
bad() { FAILED=$((FAILED+1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
free_port() { php -n -r '$s=stream_socket_server("tcp://127.0.0.1:0");$n=stream_socket_get_name($s,false);echo substr($n,strrpos($n,":")+1);'; }

MC_PORT=$(free_port)
USER_ARGS=(); [ "$(id -u)" -eq 0 ] && USER_ARGS=(-u root)
memcached "${USER_ARGS[@]}" -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 64 & MC_PID=$!
FPM_PID=""
cleanup() { [ -n "$FPM_PID" ] && kill "$FPM_PID" 2>/dev/null; kill "$MC_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$MC_PORT") 2>/dev/null && break; sleep 0.1; done

FPM_PORT=$(free_port)
DROPIN_PORT=$(free_port)
cat > "$TMP/fpm.conf" <<CONF
[global]
error_log = $TMP/fpm.log
daemonize = no
pid = $TMP/fpm.pid
[www]
listen = 127.0.0.1:$FPM_PORT
pm = static
pm.max_children = 4
pm.max_requests = 0
clear_env = no
catch_workers_output = yes
php_admin_value[extension] = $EXT
php_admin_value[session.save_handler] = files
php_admin_value[max_execution_time] = 30
[dropin]
; A php-memcached application moved by php.ini alone: this extension provides Memcached and
; serves session.save_handler = memcached (php-memcached is not loaded).
listen = 127.0.0.1:$DROPIN_PORT
pm = static
pm.max_children = 2
catch_workers_output = yes
;; php-fpm applies a pool's php_admin_value lines last to first: a setting of an extension the
;; pool loads itself goes above its extension line (loaded from php.ini, order does not matter).
php_admin_value[memcached.sess_prefix] = dropin.sess.
php_admin_value[extension] = $EXT
php_admin_value[session.save_handler] = memcached
php_admin_value[session.save_path] = 127.0.0.1:$MC_PORT
CONF
[ "$(id -u)" -eq 0 ] && FPM_ARGS=(-R) || FPM_ARGS=()
"$FPM" -n "${FPM_ARGS[@]}" -y "$TMP/fpm.conf" -F & FPM_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$FPM_PORT") 2>/dev/null && break; sleep 0.1; done

req() { # action [sid]
  env -i REQUEST_METHOD=GET SCRIPT_FILENAME="$ROOT/tests/php/fpm/app.php" SCRIPT_NAME=/app.php \
    FAE_SERVERS="127.0.0.1:$MC_PORT" FAE_ACTION="$1" FAE_SID="${2:-}" \
    cgi-fcgi -bind -connect "127.0.0.1:$FPM_PORT" 2>/dev/null | tr -d '\r' | sed '1,/^$/d'
}
stat() { php -n -r '$c=stream_socket_client("tcp://127.0.0.1:'"$MC_PORT"'");fwrite($c,"stats\r\n");while(($l=fgets($c))!==false){$l=rtrim($l);if($l==="END")break;$p=explode(" ",$l);if($p[1]==="'"$1"'")echo $p[2];}'; }

BASE_CONN=$(stat curr_connections)
: > "$TMP/out"
for i in $(seq 500); do req counter >> "$TMP/out"; done
N_OK=$(grep -c '"check":true' "$TMP/out")
check '[ "$N_OK" -eq 500 ]' "500 requests answered correctly ($N_OK)"
LAST=$(tail -1 "$TMP/out" | php -n -r 'echo json_decode(stream_get_contents(STDIN))->n;')
check '[ "$LAST" -eq 500 ]' "counter is 500 after 500 requests ($LAST)"
PIDS=$(php -n -r 'foreach(file($argv[1]) as $l){$j=json_decode($l);$p[$j->pid]=1;} echo count($p);' "$TMP/out")
check '[ "$PIDS" -eq 4 ]' "4 workers served ($PIDS)"
PRISTINE=$(grep -c '"pristine":true' "$TMP/out")
check '[ "$PRISTINE" -le 4 ]' "one client per worker, reused across requests (pristine $PRISTINE times)"
CONN=$(stat curr_connections); TOTAL=$(stat total_connections)
check '[ $((CONN - BASE_CONN)) -le 8 ]' "curr_connections bounded: $BASE_CONN before, $CONN after 500 requests"
check '[ "$TOTAL" -le 20 ]' "connections reused: total_connections $TOTAL for 500 requests"
echo "fpm: 500 requests, 4 workers, curr_connections $BASE_CONN -> $CONN, total_connections $TOTAL"

# Restart the workers (graceful reload: the master forks new ones); values stay correct.
kill -USR2 "$FPM_PID"; sleep 1
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$FPM_PORT") 2>/dev/null && break; sleep 0.1; done
: > "$TMP/out2"
for i in $(seq 40); do req counter >> "$TMP/out2"; done
check '[ "$(grep -c "\"check\":true" "$TMP/out2")" -eq 40 ]' "correct after restart"
LAST=$(tail -1 "$TMP/out2" | php -n -r 'echo json_decode(stream_get_contents(STDIN))->n;')
check '[ "$LAST" -eq 540 ]' "counter continues after restart ($LAST)"
NEWPIDS=$(php -n -r 'foreach(file($argv[1]) as $l){$p[json_decode($l)->pid]=1;} foreach(file($argv[2]) as $l){ if(isset($p[json_decode($l)->pid])) { echo "reused"; exit; } } echo "new";' "$TMP/out" "$TMP/out2")
check '[ "$NEWPIDS" = new ]' "restart forked new workers"

# A route tree per worker: a persistent client whose local near cache (ttl_ms 60 s) outlives
# requests. A worker that cached "A" keeps answering "A" after memcached holds "B"; a worker
# that never asked reads "B"; routeFor lists the local cache, then the server.
rawset() { php -n -r '$c=stream_socket_client("tcp://127.0.0.1:'"$MC_PORT"'");fwrite($c,"set fpm:near 0 0 1\r\n'"$1"'\r\n");echo fgets($c);' >/dev/null; }
rawset A
: > "$TMP/near1"; for i in $(seq 40); do req near >> "$TMP/near1"; done
rawset B
: > "$TMP/near2"; for i in $(seq 40); do req near >> "$TMP/near2"; done
NEAR=$(php -n -r '
  $want = json_encode(["local", "127.0.0.1:'"$MC_PORT"'"]); $seen = []; $bad = 0; $stale = 0;
  foreach (file($argv[1]) as $l) { $j = json_decode($l, true); $seen[$j["pid"]] = 1;
    if ($j["v"] !== "A" || json_encode($j["route"]) !== $want) $bad++; }
  foreach (file($argv[2]) as $l) { $j = json_decode($l, true);
    $v = isset($seen[$j["pid"]]) ? "A" : "B"; if ($j["v"] !== $v) $bad++;
    if ($j["v"] === "A" && $j["hits"] > 0) $stale++; }
  echo ($bad === 0 && $stale > 0) ? "ok" : "bad=$bad stale=$stale";' "$TMP/near1" "$TMP/near2")
check '[ "$NEAR" = ok ]' "near cache per php-fpm worker, kept across requests ($NEAR)"

# getOrSet storm: 24 concurrent requests on one fresh key across the 4 workers: one compute,
# every request gets the value.
GKEY="fpmgos$RANDOM"
GPIDS=()
for i in $(seq 24); do req getorset "$GKEY" > "$TMP/g$i" & GPIDS+=($!); done
wait "${GPIDS[@]}"
STORM=$(php -n -r '
  $ok = 0; $max = 0; $computes = null;
  for ($i = 1; $i <= 24; $i++) { $j = json_decode((string)file_get_contents($argv[1] . "/g$i"), true);
    if (($j["v"] ?? null) === "value of " . $argv[2]) $ok++; $max = max($max, $j["ms"] ?? 1e9); }
  $j = json_decode((string)file_get_contents($argv[1] . "/g24"), true);
  echo "$ok ", (int)($j["computes"] ?? 0), " ", round($max);' "$TMP" "$GKEY")
read -r G_OK G_COMPUTES G_MAX <<< "$STORM"
check '[ "$G_OK" -eq 24 ]' "getOrSet storm: 24 requests got the value ($G_OK)"
check '[ "$G_COMPUTES" -eq 1 ]' "getOrSet storm: one compute across the workers ($G_COMPUTES)"
echo "fpm: getOrSet storm, 24 requests, $G_COMPUTES compute, slowest getOrSet ${G_MAX} ms"

# A fatal error inside $compute (a bailout) leaves no trace in that worker's persistent client:
# once the dead request's lease stub is gone (deleted here over a raw connection, which the
# workers' in-process state knows nothing of), every worker, the one that died included,
# answers at once. (Had the longjmp skipped the core's frames, that worker would wait
# 2 x wait_ms as a follower of the dead request on every call for the key.)
FKEY="fpmfatalgos$RANDOM"
FATAL_PID=$(req getorset-fatal "$FKEY" | head -1 | php -n -r 'echo json_decode(fgets(STDIN))->pid ?? 0;')
php -n -r '$c=stream_socket_client("tcp://127.0.0.1:'"$MC_PORT"'");fwrite($c,"md '"$FKEY"'\r\n");echo fgets($c);' >/dev/null
FPIDS=()
for i in $(seq 8); do req getorset "$FKEY" > "$TMP/f$i" & FPIDS+=($!); done
wait "${FPIDS[@]}"
AFTER=$(php -n -r '
  $ok = 0; $max = 0; $pids = [];
  for ($i = 1; $i <= 8; $i++) { $j = json_decode((string)file_get_contents($argv[1] . "/f$i"), true);
    if (($j["v"] ?? null) === "value of " . $argv[2]) $ok++; $max = max($max, $j["ms"] ?? 1e9); $pids[$j["pid"] ?? 0] = 1; }
  echo "$ok ", round($max), " ", isset($pids[(int)$argv[3]]) ? "yes" : "no";' "$TMP" "$FKEY" "$FATAL_PID")
read -r F_OK F_MAX F_SEEN <<< "$AFTER"
check '[ "$FATAL_PID" -gt 0 ] && [ "$F_SEEN" = yes ]' "the worker whose compute died served again (pid $FATAL_PID: $F_SEEN)"
check '[ "$F_OK" -eq 8 ] && [ "$F_MAX" -lt 1000 ]' "after a fatal error in \$compute: 8/8 answered ($F_OK), slowest ${F_MAX} ms"

# Concurrent requests on one session id: the lock serializes them, no increment is lost.
SID="fpmsess$RANDOM"
RPIDS=()
for i in $(seq 24); do req session "$SID" > "$TMP/s$i" & RPIDS+=($!); done
wait "${RPIDS[@]}"
FINAL=$(req session "$SID" | php -n -r 'echo json_decode(stream_get_contents(STDIN))->n;')
check '[ "$FINAL" -eq 25 ]' "24 concurrent session requests + 1: n = 25 ($FINAL)"

# A fatal error mid-request releases the session lock (no 2 s wait for the next request).
SID2="fpmfatal$RANDOM"
req fatal "$SID2" > /dev/null
START=$(date +%s%N)
N=$(req session "$SID2" | php -n -r 'echo json_decode(stream_get_contents(STDIN))->n;')
MS=$(( ($(date +%s%N) - START) / 1000000 ))
check '[ "$N" -ge 1 ] && [ "$MS" -lt 1500 ]' "lock released after a fatal error (next request in ${MS} ms)"

# The php-memcached application in the [dropin] pool: cache and sessions, no code change.
dropin() { # sid
  env -i REQUEST_METHOD=GET SCRIPT_FILENAME="$ROOT/tests/php/fpm/memcached_app.php" SCRIPT_NAME=/app.php \
    HTTP_COOKIE="PHPSESSID=$1" cgi-fcgi -bind -connect "127.0.0.1:$DROPIN_PORT" 2>/dev/null | tr -d '\r' | sed '1,/^$/d'
}
DSID="dropin$RANDOM$RANDOM"
: > "$TMP/dropin"
for i in $(seq 10); do dropin "$DSID" >> "$TMP/dropin"; done
DROPIN=$(php -n -r '
  $l = array_map(fn($x) => json_decode($x, true), file($argv[1]));
  $last = end($l);
  echo count($l), " ", $last["class"] ?? "?", " ", $last["hits"] ?? 0, " ", $last["n"] ?? 0, " ", $last["handler"] ?? "?", " ", $last["prefix"] ?? "?", " ", $last["loaded"] ?? "?";' "$TMP/dropin")
read -r D_N D_CLASS D_HITS D_SESS D_HANDLER D_PREFIX D_LOADED <<< "$DROPIN"
check '[ "$D_N" -eq 10 ] && [ "$D_CLASS" = Memcached ] && [ "$D_HITS" -eq 10 ]' "php-memcached app, php.ini only: Memcached served 10 requests ($DROPIN)"
check '[ "$D_SESS" -eq 10 ] && [ "$D_HANDLER" = memcached ]' "session.save_handler = memcached kept the session across 10 requests ($D_SESS)"
check '[ "$D_LOADED" = 3.2.0 ]' "the app sees extension_loaded('memcached') and phpversion('memcached') = 3.2.0 ($D_LOADED)"
RAW=$(php -n -r '$c=stream_socket_client("tcp://127.0.0.1:'"$MC_PORT"'");fwrite($c,"get dropin.sess.'"$DSID"'\r\n");$h=fgets($c);echo str_starts_with($h,"VALUE")?rtrim(fgets($c)):rtrim($h);')
check '[ "$RAW" = "n|i:10;" ] && [ "$D_PREFIX" = dropin.sess. ]' "the session is in memcached under the pool's php_admin_value[memcached.sess_prefix] ($RAW; prefix $D_PREFIX)"

# stats.dir under worker churn (pm.max_requests = 50): 2000 requests, each one get. The merged
# counter of `fae stats --dir` never goes down as workers exit and are folded into the retired
# totals, and once the pool has stopped gracefully (SIGQUIT with a process_control_timeout, so
# the last workers exit through PHP's shutdown and write their final snapshots) it equals the
# requests made.
FAE_BIN="${FAE_BIN:-$ROOT/target/debug/fae}"
if [ -x "$FAE_BIN" ]; then
  STATS_DIR="$TMP/stats"; mkdir -p "$STATS_DIR"
  FPM2_PORT=$(free_port)
  sed -e '/^\[dropin\]/,$d' -e "s/^listen = .*/listen = 127.0.0.1:$FPM2_PORT/" -e "s/^pm.max_requests = 0/pm.max_requests = 50/" \
      -e "s#^pid = .*#pid = $TMP/fpm2.pid\nprocess_control_timeout = 10s#" -e "s#^error_log = .*#error_log = $TMP/fpm2.log#" \
      "$TMP/fpm.conf" > "$TMP/fpm2.conf"
  "$FPM" -n "${FPM_ARGS[@]}" -y "$TMP/fpm2.conf" -F & FPM2_PID=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$FPM2_PORT") 2>/dev/null && break; sleep 0.1; done
  merged() { "$FAE_BIN" stats --dir "$STATS_DIR" --json | php -n -r '$j=json_decode(stream_get_contents(STDIN),true); echo (int)($j["destinations"]["127.0.0.1:'"$MC_PORT"'"]["requests"] ?? 0), " ", (int)($j["process"]["retired_processes"] ?? 0);'; }
  PREV=0; DOWN=0
  for i in $(seq 2000); do
    env -i REQUEST_METHOD=GET SCRIPT_FILENAME="$ROOT/tests/php/fpm/app.php" SCRIPT_NAME=/app.php \
      FAE_SERVERS="127.0.0.1:$MC_PORT" FAE_ACTION=stats FAE_SID="$STATS_DIR" \
      cgi-fcgi -bind -connect "127.0.0.1:$FPM2_PORT" >/dev/null 2>&1
    if [ $((i % 100)) -eq 0 ]; then
      read -r NOW _ <<< "$(merged)"
      [ "$NOW" -lt "$PREV" ] && DOWN=$((DOWN+1)) && echo "merged requests went down: $PREV -> $NOW" >&2
      PREV=$NOW
    fi
  done
  kill -QUIT "$FPM2_PID"; wait "$FPM2_PID" 2>/dev/null
  read -r TOTAL RETIRED <<< "$(merged)"
  check '[ "$DOWN" -eq 0 ]' "stats.dir: merged counters never went down across worker restarts"
  check '[ "$TOTAL" -eq 2000 ]' "stats.dir: merged requests equal the 2000 requests made ($TOTAL)"
  check '[ "$RETIRED" -ge 40 ]' "stats.dir: 2000 requests / pm.max_requests 50 retired >= 40 workers ($RETIRED)"
  echo "fpm: stats.dir with pm.max_requests=50: 2000 requests -> merged $TOTAL, $RETIRED processes retired"
else
  bad "fae CLI not built at $FAE_BIN (cargo build -p fae-core)"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
