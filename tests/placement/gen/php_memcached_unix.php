<?php
// Placement with Unix-socket servers as php-memcached computes it: getServerByKey() (no I/O)
// for the mixed socket/TCP pool of tests/placement/README.md. Prints `key,server`; a socket
// server is printed as its path (php-memcached reports host = path and port 11211: addServer's
// port 0 becomes libmemcached's default port, which ketama then leaves out of the point name).
// Usage: php -d extension=igbinary -d extension=msgpack -d extension=memcached \
//          php_memcached_unix.php ketama|ketama-w1234|default
$variant = $argv[1] ?? 'ketama';
$servers = [
    ['/tmp/fae-placement/m1.sock', 0],
    ['127.0.0.1', 21211],
    ['/tmp/fae-placement/m2.sock', 0],
    ['127.0.0.1', 21212],
];
$m = new Memcached();
if ($variant !== 'default') {
    $m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
}
foreach ($servers as $i => [$host, $port]) {
    $weight = $variant === 'ketama-w1234' ? $i + 1 : 1;
    if (!$m->addServer($host, $port, $weight)) {
        fwrite(STDERR, "addServer $host failed\n");
        exit(1);
    }
}
echo "key,server\n";
for ($k = 0; $k < 10000; $k++) {
    $s = $m->getServerByKey("key:$k");
    echo "key:$k,", $s['host'][0] === '/' ? $s['host'] : "{$s['host']}:{$s['port']}", "\n";
}
