<?php
// php-memcached drop-in behaviour, run with ONLY the fae extension loaded (and optionally
// igbinary/msgpack), as an unchanged php-memcached application would run:
//   php -n -d extension=$PWD/target/debug/libfae_php.so tests/php/dropin.php
// Prints "N passed, N failed".
require __DIR__ . '/lib.php';

if (!extension_loaded('fae')) { fwrite(STDERR, "the fae extension is not loaded\n"); exit(2); }
if (extension_loaded('memcached')) { fwrite(STDERR, "run without php-memcached loaded\n"); exit(2); }

$mc = new Memcached_Process();
[$host, $port] = ['127.0.0.1', $mc->port];
function fresh(): Memcached {
    global $host, $port;
    $m = new Memcached();
    $m->addServer($host, $port);
    return $m;
}

test('php.ini switch: Memcached and MemcachedException are provided', function () {
    check(class_exists('Memcached', false), 'Memcached exists');
    eq(get_parent_class('Memcached'), 'Fae\Client', 'Memcached extends Fae\Client');
    eq(class_parents('MemcachedException'), ['Fae\Exception' => 'Fae\Exception', 'RuntimeException' => 'RuntimeException', 'Exception' => 'Exception'], 'MemcachedException parents');
    $e = new MemcachedException('boom', 7);
    eq([$e->getMessage(), $e->getCode()], ['boom', 7], 'MemcachedException is constructible');
    eq(get_class(new Memcached()), 'Memcached', 'new Memcached');
    eq(ini_get('fae.provide_memcached_classes'), '1', 'default on');
    $php = php_command();
    $off = shell_exec(implode(' ', array_map('escapeshellarg', array_merge($php, ['-d', 'fae.provide_memcached_classes=0', '-r', 'var_export([class_exists("Memcached"), class_exists("Fae\\\\Client"), class_exists("Fae\\\\Exception")]);']))));
    eq($off, "array (\n  0 => false,\n  1 => true,\n  2 => true,\n)", 'off keeps only Fae\*');
});

test('our errors are MemcachedException (and Fae\Exception)', function () {
    try { new Memcached(null, ['servers' => 'not a list']); check(false, 'bad config throws'); }
    catch (MemcachedException $e) { check($e instanceof Fae\Exception, 'caught as both'); }
});

finish();
