<?php
// The php-fpm test's application: a persistent Fae\Client per worker, getOrSet, and a locked session.
$servers = explode(',', getenv('FAE_SERVERS') ?: ($_SERVER['FAE_SERVERS'] ?? ''));
$m = new Fae\Client('fpm-test', ['servers' => $servers]);
$action = $_SERVER['FAE_ACTION'] ?? 'counter';
header('Content-Type: text/plain');
if ($action === 'counter') {
    $n = $m->increment('fpm:counter', 1, 1);
    $own = $m->set('fpm:pid:' . getmypid(), getmypid());
    echo json_encode(['pid' => getmypid(), 'n' => $n, 'pristine' => $m->isPristine(), 'check' => $m->get('fpm:pid:' . getmypid()) === getmypid() && $own]), "\n";
} elseif ($action === 'near') {
    // A route tree in a persistent client: a local near cache per worker in front of the pool.
    $n = new Fae\Client('fpm-near', ['pools' => ['main' => ['servers' => $servers]],
        'route' => ['type' => 'local', 'ttl_ms' => 60000, 'route' => 'main']]);
    $st = $n->clientStats()['routes']['route'];
    echo json_encode(['pid' => getmypid(), 'v' => $n->get('fpm:near'), 'route' => $n->routeFor('fpm:near'),
        'hits' => $st['local_hits']]), "\n";
} elseif ($action === 'getorset' || $action === 'getorset-fatal') {
    // Stampede protection across php-fpm workers: one compute per key for the whole pool.
    // Generous timeouts: a set that times out on a loaded CI machine leaves the lease to a
    // follower, which computes again; this checks the leases, not the machine's speed.
    $g = new Fae\Client('fpm-stampede', ['servers' => $servers, 'timeouts' => ['connect_ms' => 1000, 'io_ms' => 2000],
        'stampede' => ['lease_ttl_s' => 5, 'wait_ms' => 3000]]);
    $key = $_SERVER['FAE_SID'];
    if ($action === 'getorset-fatal') {
        echo json_encode(['pid' => getmypid()]), "\n";
        flush();
        $g->getOrSet($key, function () { trigger_error('fatal inside $compute', E_USER_ERROR); });
    }
    $t = microtime(true);
    $v = $g->getOrSet($key, function ($k) use ($g) {
        usleep(20000); // a slow source: without leases every concurrent request would compute
        $g->increment("$k:computes", 1, 1);
        return "value of $k";
    }, 60);
    $ms = (microtime(true) - $t) * 1000;
    usleep(100000); // hold the worker so that concurrent requests reach every worker
    echo json_encode(['pid' => getmypid(), 'v' => $v, 'ms' => $ms, 'computes' => $g->get("$key:computes")]), "\n";
} elseif ($action === 'stats') {
    // stats.dir under worker churn: every request is one get, counted by its worker's snapshot.
    $s = new Fae\Client('fpm-stats', ['servers' => $servers,
        'stats' => ['dir' => $_SERVER['FAE_SID'], 'interval_ms' => 60000]]);
    $s->get('fpm:stats');
    echo json_encode(['pid' => getmypid()]), "\n";
} elseif ($action === 'session') {
    $h = new Fae\SessionHandler('fpm-sess', ['servers' => $servers], ['lock_wait_min' => 5, 'lock_wait_max' => 50, 'lock_retries' => 400]);
    session_set_save_handler($h, true);
    session_id($_SERVER['FAE_SID']);
    session_start();
    $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
    usleep(2000); // widen the race window: without the lock, increments would be lost
    echo json_encode(['n' => $_SESSION['n']]), "\n";
} elseif ($action === 'fatal') {
    $h = new Fae\SessionHandler('fpm-sess', ['servers' => $servers], ['lock_wait_min' => 5, 'lock_wait_max' => 50, 'lock_retries' => 400]);
    session_set_save_handler($h, true);
    session_id($_SERVER['FAE_SID']);
    session_start();
    undefined_function_to_die();
}
