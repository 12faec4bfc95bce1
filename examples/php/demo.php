<?php
// Fae\Client as a drop-in for php-memcached. Run with the demo's servers:
//   php -n -d extension=target/release/libfae_php.so examples/php/demo.php 127.0.0.1:21211 127.0.0.1:21212 ...
use Fae\Client as Memcached;

$servers = array_slice($argv, 1) ?: ['127.0.0.1:11211'];
$m = new Memcached('demo');                       // persistent per process, like php-memcached
if (!count($m->getServerList())) {                // the php-memcached idiom: add servers once
    foreach ($servers as $s) {
        [$host, $port] = explode(':', $s);
        $m->addServer($host, (int)$port);
    }
}
$m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);   // same placement as php-memcached

$m->set('php:user:1', ['name' => 'Ada', 'langs' => ['php', 'rust']], 300);
$m->set('php:visits', 0);
$m->increment('php:visits', 5);
var_dump($m->get('php:user:1'));
printf("visits=%d\n", $m->get('php:visits'));
printf("get missing: %s (code %d, %s)\n", var_export($m->get('php:nope'), true), $m->getResultCode(), $m->getResultMessage());
print_r($m->getMulti(['php:user:1', 'php:visits', 'php:nope']));
// Stampede protection: of all the processes asking at once, one computes; the rest get its value.
$report = $m->getOrSet('php:report', fn(string $key) => ['key' => $key, 'built_by' => getmypid()], 60);
printf("getOrSet: %s built by pid %d\n", $report['key'], $report['built_by']);
foreach (['php:user:1', 'php:visits', 'demo:a'] as $k) {
    $s = $m->getServerByKey($k);
    printf("%-12s -> %s:%d\n", $k, $s['host'], $s['port']);
}
// Flags are a per-language codec: the C example stored "apple" with flags 1, which
// php-memcached's layout (and so Fae\Client) reads as a long, exactly as php-memcached would.
$x = $m->get('demo:a', null, Memcached::GET_EXTENDED);
printf("demo:a from C: %s (flags type nibble 1 = long in php-memcached's layout)\n", var_export($x['value'] ?? false, true));
