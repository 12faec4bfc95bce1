<?php
// One worker process of `fae-bench fault` (not a test): paced single gets through one PHP client.
//
//   php -n [-d extension=igbinary -d extension=msgpack -d extension=memcached | -d extension=libfae_php.so] \
//       bench/fault_worker.php --client fae|php-memcached --servers H:P,H:P,... --keys FILE \
//       --worker I --workers N [--pace-us 250] [--max-secs 120] [--place MARKER]
//
// `fae-bench fault` starts one of these per worker (as php-fpm runs one client per process),
// pauses and resumes a server and reads the samples. Same protocol as fault_worker.py: the keys
// file has one `key value` line per key; `--place MARKER` sets every key to MARKER and exits;
// otherwise read every key once, print `ready`, wait for `go DEADLINE` (CLOCK_MONOTONIC ns, what
// hrtime() reads) on stdin, get key after key from key I*len/N, at most one per pace, until the
// deadline, then print `samples`, `START_NS LATENCY_NS KEY_INDEX OUTCOME` lines (h hit with the
// right value, m miss, e error or a wrong value) and `end COUNT`; on stderr, up to 5 distinct
// error texts with their counts. Exit status 3: the client is not available in this PHP (the
// message says why).
//
// Settings: `fae` is `new Fae\Client(null, ['servers' => ..., 'mode' => 'libmemcached'])`:
// weighted ketama (Fae\Client's own default is php-memcached's modula), everything else at
// libfae's defaults (250 ms I/O timeout, breaker, background probes). `php-memcached` gets the failover
// settings its users are told to set: OPT_LIBKETAMA_COMPATIBLE (the same placement),
// OPT_SERVER_FAILURE_LIMIT 2, OPT_REMOVE_FAILED_SERVERS, OPT_RETRY_TIMEOUT 1 s,
// OPT_DEAD_TIMEOUT 1 s, OPT_CONNECT_TIMEOUT and OPT_POLL_TIMEOUT 250 ms, OPT_RECV_TIMEOUT and
// OPT_SEND_TIMEOUT 250 ms (in µs), ASCII protocol, TCP_NODELAY.

const MAX_SAMPLES = 1 << 20;

function unavailable(string $why): never
{
    fwrite(STDERR, "$why\n");
    exit(3);
}

$opt = getopt('', ['client:', 'servers:', 'keys:', 'worker:', 'workers:', 'pace-us:', 'max-secs:', 'place:']);
foreach (['client', 'servers', 'keys'] as $req) {
    if (!isset($opt[$req])) {
        fwrite(STDERR, "--$req is required\n");
        exit(2);
    }
}
$worker = (int)($opt['worker'] ?? 0);
$workers = max(1, (int)($opt['workers'] ?? 1));
$pace = (int)($opt['pace-us'] ?? 250) * 1000;
$maxNs = (int)((float)($opt['max-secs'] ?? 120) * 1e9);

$keys = [];
$values = [];
foreach (file($opt['keys'], FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) {
    [$k, $v] = explode(' ', $line, 2);
    $keys[] = $k;
    $values[] = $v;
}
if (!$keys) {
    fwrite(STDERR, "no keys\n");
    exit(1);
}
$servers = [];
foreach (explode(',', $opt['servers']) as $s) {
    $at = strrpos($s, ':');
    $servers[] = [substr($s, 0, $at), (int)substr($s, $at + 1)];
}

switch ($opt['client']) {
    case 'fae':
        if (!extension_loaded('fae')) {
            unavailable('the fae extension is not loaded');
        }
        // Fae\Client places keys as php-memcached's defaults do (modula) unless told: the
        // weighted ketama every other row uses, as OPT_LIBKETAMA_COMPATIBLE would set it.
        $mc = new Fae\Client(null, [
            'servers' => array_map(fn($s) => "$s[0]:$s[1]", $servers),
            'mode' => 'libmemcached',
        ]);
        $notFound = Fae\Client::RES_NOTFOUND;
        break;
    case 'php-memcached':
        // Fae registers its own \Memcached when php-memcached is absent: ask for the extension.
        if (!extension_loaded('memcached')) {
            unavailable('the memcached extension (php-memcached) is not loaded');
        }
        $mc = new Memcached();
        // Placement first, then the servers (libmemcached's ketama state depends on the order).
        $mc->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
        $mc->setOption(Memcached::OPT_BINARY_PROTOCOL, false);
        $mc->setOption(Memcached::OPT_TCP_NODELAY, true);
        $mc->setOption(Memcached::OPT_CONNECT_TIMEOUT, 250);
        $mc->setOption(Memcached::OPT_POLL_TIMEOUT, 250);
        $mc->setOption(Memcached::OPT_RECV_TIMEOUT, 250000);
        $mc->setOption(Memcached::OPT_SEND_TIMEOUT, 250000);
        $mc->setOption(Memcached::OPT_SERVER_FAILURE_LIMIT, 2);
        $mc->setOption(Memcached::OPT_REMOVE_FAILED_SERVERS, true);
        $mc->setOption(Memcached::OPT_RETRY_TIMEOUT, 1);
        $mc->setOption(Memcached::OPT_DEAD_TIMEOUT, 1);
        $mc->addServers($servers);
        $notFound = Memcached::RES_NOTFOUND;
        break;
    default:
        unavailable("unknown client {$opt['client']}");
}

if (isset($opt['place'])) {
    foreach ($keys as $k) {
        if (!$mc->set($k, $opt['place'])) {
            fwrite(STDERR, "set $k failed: {$mc->getResultMessage()}\n");
            exit(1);
        }
    }
    echo 'placed ', count($keys), "\n";
    exit(0);
}

foreach ($keys as $k) {
    $mc->get($k);
}
echo "ready\n";
fflush(STDOUT);
$go = explode(' ', trim((string)fgets(STDIN)));
if (count($go) !== 2 || $go[0] !== 'go') {
    exit(0); // the bench gave up before the start
}
$deadline = min((int)$go[1], hrtime(true) + $maxNs);

$n = count($keys);
$i = intdiv($worker * $n, $workers);
$out = [];
$seen = []; // up to 5 distinct error texts, counted (for the bench's stderr)
$next = hrtime(true);
while (count($out) < MAX_SAMPLES) {
    $t0 = hrtime(true);
    if ($t0 >= $deadline) {
        break;
    }
    $idx = $i % $n;
    $i++;
    $v = $mc->get($keys[$idx]);
    if ($v === false) {
        $o = $mc->getResultCode() === $notFound ? 'm' : 'e';
        if ($o === 'e') {
            $why = str_replace($keys[$idx], 'KEY', $mc->getResultMessage());
            if (isset($seen[$why]) || count($seen) < 5) {
                $seen[$why] = ($seen[$why] ?? 0) + 1;
            }
        }
    } else {
        $o = $v === $values[$idx] ? 'h' : 'e';
    }
    $t1 = hrtime(true);
    $out[] = "$t0 " . ($t1 - $t0) . " $idx $o";
    $next += $pace;
    if ($next > $t1) {
        usleep(intdiv($next - $t1, 1000));
    } else {
        $next = $t1;
    }
}
echo "samples\n";
if ($out) {
    echo implode("\n", $out), "\n";
}
echo 'end ', count($out), "\n";
foreach ($seen as $why => $count) {
    fwrite(STDERR, "$count × $why\n");
}
