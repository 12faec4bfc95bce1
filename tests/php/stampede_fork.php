<?php
// Forked children for run.php's stampede tests. run.php starts this in a fresh PHP (run_php())
// so that the forking process has never used a Fae\Client, like php-fpm's master: no libfae
// thread exists at fork time. Each child builds its own client, as a request would. Prints
// run_forked()'s results as JSON.
//   storm <addr> <getOrSet|read-through> <key> <n>: n processes ask for <key> at the same
//       moment; the compute sleeps 5 ms and increments "<key>:computes" in memcached.
//   fatal <key>: $compute dies on a fatal error; a shutdown function asks again.
require __DIR__ . '/lib.php';
use Fae\Client;

$mode = $argv[1] ?? '';
if ($mode === 'storm') {
    [, , $addr, $how, $key, $n] = $argv;
    $start = microtime(true) + 0.2;
    $out = run_forked((int)$n, function ($i) use ($addr, $how, $key, $start) {
        // Generous deadlines: this is about leases, not about a loaded test machine's latency
        // (with the defaults, 100 ms to connect, a slow start makes every process compute
        // without the cache, which is get_or_set's answer to a cache that is down).
        $c = new Client(null, ['servers' => [$addr], 'stampede' => ['wait_ms' => 3000],
                               'timeouts' => ['connect_ms' => 2000, 'io_ms' => 2000]]);
        while (microtime(true) < $start) usleep(100);
        $compute = function () use ($addr, $key, $i) {
            usleep(5000);
            mc_command($addr, "incr $key:computes 1\r\n");
            return ['by' => $i, 'data' => str_repeat('x', 100)];
        };
        $t = microtime(true);
        $v = $how === 'getOrSet'
            ? $c->getOrSet($key, fn($k) => $compute(), 60)
            : $c->get($key, function ($memc, $k, &$value) use ($compute) { $value = $compute(); return true; });
        return ['v' => $v, 'ms' => (microtime(true) - $t) * 1000, 'stats' => $c->clientStats()['stampede']];
    }, 20.0);
} elseif ($mode === 'fatal') {
    $key = $argv[2];
    // A fatal error ends the script: $compute dies; a shutdown function, still in that process
    // and on the same client, asks again. Had the engine's longjmp skipped the core's frames,
    // the key's in-process flight would still be registered and this call would wait
    // 2 × wait_ms for a leader that is gone. (An in-process cache: no memcached lease stub is
    // left behind to wait on either.)
    $out = run_forked(1, function ($i, $put) use ($key) {
        $c = new Client(null, ['route' => ['type' => 'local'], 'stampede' => ['wait_ms' => 1000]]);
        register_shutdown_function(function () use ($c, $key, $put) {
            $t = microtime(true);
            $v = $c->getOrSet($key, fn() => 'after the fatal error');
            $put(['v' => $v, 'ms' => (microtime(true) - $t) * 1000, 'stats' => $c->clientStats()['stampede']]);
        });
        error_reporting(0);
        $c->getOrSet($key, function () { trigger_error('fatal inside $compute', E_USER_ERROR); });
        return ['v' => 'not reached'];
    }, 20.0);
} else {
    fwrite(STDERR, "usage: stampede_fork.php storm <addr> <getOrSet|read-through> <key> <n> | fatal <key>\n");
    exit(2);
}
echo json_encode($out), "\n";
