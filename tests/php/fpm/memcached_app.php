<?php
// The php-fpm test's php-memcached application, unchanged: `new Memcached`, its idioms, and
// sessions from php.ini (session.save_handler = memcached). Served by the fae extension alone.
$m = new Memcached('app');
if (!count($m->getServerList())) {
    [$host, $port] = explode(':', ini_get('session.save_path'));
    $m->addServer($host, (int)$port);
}
header('Content-Type: text/plain');
$hits = $m->increment('app:hits', 1, 1);
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
echo json_encode(['pid' => getmypid(), 'class' => get_class($m), 'hits' => $hits, 'n' => $_SESSION['n'],
    'handler' => ini_get('session.save_handler'), 'prefix' => ini_get('memcached.sess_prefix'),
    'loaded' => extension_loaded('memcached') ? phpversion('memcached') : 'no']), "\n";
