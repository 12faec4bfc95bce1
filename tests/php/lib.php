<?php
// Shared helpers for the PHP tests: real memcached processes on free 127.0.0.1 ports,
// started with proc_open (so we hold their PIDs) and stopped by PID.

function free_port(): int {
    $s = stream_socket_server('tcp://127.0.0.1:0', $errno, $err);
    $name = stream_socket_get_name($s, false);
    fclose($s);
    return (int)substr($name, strrpos($name, ':') + 1);
}

final class Memcached_Process {
    public $proc;
    public int $port;
    public int $pid;
    public function __construct(array $extra = []) {
        $this->port = free_port();
        $args = ['memcached', '-l', '127.0.0.1', '-p', (string)$this->port, '-U', '0', '-m', '64'];
        if (function_exists('posix_getuid') ? posix_getuid() === 0 : trim((string)shell_exec('id -u')) === '0') {
            array_push($args, '-u', 'root');
        }
        $args = array_merge($args, $extra);
        $this->proc = proc_open($args, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        $this->pid = proc_get_status($this->proc)['pid'];
        for ($i = 0; $i < 100; $i++) {
            $c = @stream_socket_client("tcp://127.0.0.1:{$this->port}", $e, $s, 0.1);
            if ($c) { fclose($c); return; }
            usleep(20000);
        }
        throw new RuntimeException("memcached on {$this->port} did not start");
    }
    public function addr(): string { return "127.0.0.1:{$this->port}"; }
    public function stop(): void {
        if ($this->proc) { proc_terminate($this->proc); proc_close($this->proc); $this->proc = null; }
    }
    public function __destruct() { $this->stop(); }
}

/** memcached on a Unix-domain socket in a fresh temporary directory (`memcached -s PATH`). */
final class Memcached_Socket_Process {
    public $proc;
    public string $dir;
    public int $pid;
    public function __construct(array $extra = []) {
        $this->dir = sys_get_temp_dir() . '/fae-php-sock-' . getmypid() . '-' . bin2hex(random_bytes(4));
        mkdir($this->dir);
        $args = array_merge(['memcached', '-s', $this->path(), '-m', '64'], $extra);
        if (function_exists('posix_getuid') ? posix_getuid() === 0 : trim((string)shell_exec('id -u')) === '0') {
            array_push($args, '-u', 'root');
        }
        $this->proc = proc_open($args, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        $this->pid = proc_get_status($this->proc)['pid'];
        for ($i = 0; $i < 100; $i++) {
            $c = @stream_socket_client('unix://' . $this->path(), $e, $s, 0.1);
            if ($c) { fclose($c); return; }
            usleep(20000);
        }
        throw new RuntimeException('memcached on ' . $this->path() . ' did not start');
    }
    public function path(): string { return $this->dir . '/memcached.sock'; }
    public function stop(): void {
        if ($this->proc) { proc_terminate($this->proc); proc_close($this->proc); $this->proc = null; }
        @unlink($this->path()); @rmdir($this->dir);
    }
    public function __destruct() { $this->stop(); }
}

/** memcached serving TLS only (`-Z`) with the certificate s.pem / s.key in $dir. */
final class Memcached_TLS_Process {
    public $proc;
    public int $port;
    public function __construct(string $dir) {
        $this->port = free_port();
        $args = ['memcached', '-l', '127.0.0.1', '-p', (string)$this->port, '-U', '0', '-m', '64',
                 '-Z', '-o', "ssl_chain_cert=$dir/s.pem,ssl_key=$dir/s.key"];
        if (function_exists('posix_getuid') ? posix_getuid() === 0 : trim((string)shell_exec('id -u')) === '0') {
            array_push($args, '-u', 'root');
        }
        $this->proc = proc_open($args, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        for ($i = 0; $i < 100; $i++) {
            $c = @stream_socket_client("tcp://127.0.0.1:{$this->port}", $e, $s, 0.1);
            if ($c) { fclose($c); return; }
            usleep(20000);
        }
        throw new RuntimeException("memcached -Z on {$this->port} did not start");
    }
    public function addr(): string { return "127.0.0.1:{$this->port}"; }
    public function stop(): void {
        if ($this->proc) { proc_terminate($this->proc); proc_close($this->proc); $this->proc = null; }
    }
    public function __destruct() { $this->stop(); }
}

/** One memcached stat (raw protocol, no client involved). */
function mc_stat(string $addr, string $name): ?string {
    $c = stream_socket_client(($addr[0] === '/' ? 'unix://' : 'tcp://') . $addr, $e, $s, 1.0);
    fwrite($c, "stats\r\n");
    $val = null;
    while (($l = fgets($c)) !== false) {
        $l = rtrim($l);
        if ($l === 'END') break;
        $p = explode(' ', $l);
        if ($p[1] === $name) $val = $p[2];
    }
    fclose($c);
    return $val;
}

/** One command on a fresh connection (raw protocol, no client involved); its first reply line. */
function mc_command(string $addr, string $line): string {
    $c = stream_socket_client("tcp://$addr", $e, $s, 1.0);
    fwrite($c, $line);
    $reply = rtrim((string)fgets($c));
    fclose($c);
    return $reply;
}

/** This PHP's command line without the script (binary, -n, -d extension=…): another PHP
 *  started with it loads the same extensions. */
function php_command(): array {
    $cmd = explode("\0", rtrim((string)@file_get_contents('/proc/self/cmdline'), "\0"));
    $i = array_search($_SERVER['argv'][0] ?? '', $cmd, true);
    return $i === false || $i === 0 ? [PHP_BINARY] : array_slice($cmd, 0, $i);
}

/** Run a PHP script in a fresh process with this one's options; its stdout, or null if it
 *  did not finish within $timeout seconds (then it is killed). */
function run_php(string $script, array $args, float $timeout): ?string {
    $p = proc_open(array_merge(php_command(), [$script], $args), [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => STDERR], $pipes);
    stream_set_blocking($pipes[1], false);
    $out = '';
    $deadline = microtime(true) + $timeout;
    while (!feof($pipes[1]) && microtime(true) < $deadline) {
        $r = [$pipes[1]]; $w = $e = null;
        if (stream_select($r, $w, $e, 0, 50000)) $out .= (string)fread($pipes[1], 65536);
    }
    $done = feof($pipes[1]);
    fclose($pipes[1]);
    if (!$done) proc_terminate($p, 9);
    proc_close($p);
    return $done ? $out : null;
}

/**
 * Run $body($i, $put) in $n forked children at once; returns [$i => what $body returned or
 * last passed to $put (JSON round trip), or null if the child died or missed the deadline]. A
 * child leaves through exec, never through PHP's shutdown: the parent's objects (memcached
 * processes) must not be destroyed twice. Every wait is bounded by $timeout; stragglers are
 * killed. Fork from a process that has not used a Fae\Client yet (see run_php()), as php-fpm's
 * master does: no libfae thread exists at fork time.
 */
function run_forked(int $n, callable $body, float $timeout = 20.0): array {
    $dir = sys_get_temp_dir() . '/fae-fork-' . getmypid() . '-' . bin2hex(random_bytes(4));
    mkdir($dir);
    $pids = []; $how = [];
    for ($i = 0; $i < $n; $i++) {
        $pid = pcntl_fork();
        if ($pid === -1) throw new RuntimeException('pcntl_fork failed');
        if ($pid === 0) {
            // Even after a fatal error: the exec is queued behind the body's own shutdown functions.
            register_shutdown_function(function () {
                register_shutdown_function(function () { pcntl_exec('/bin/true'); });
            });
            $put = function ($r) use ($dir, $i) {
                file_put_contents("$dir/$i.tmp", json_encode($r));
                rename("$dir/$i.tmp", "$dir/$i");
            };
            $put($body($i, $put));
            pcntl_exec('/bin/true');
            exit(1);
        }
        $pids[$i] = $pid;
    }
    $deadline = microtime(true) + $timeout;
    while ($pids && microtime(true) < $deadline) {
        foreach ($pids as $i => $pid) {
            if (pcntl_waitpid($pid, $status, WNOHANG) === 0) continue;
            $how[$i] = pcntl_wifsignaled($status) ? 'signal ' . pcntl_wtermsig($status) : 'exit ' . pcntl_wexitstatus($status);
            unset($pids[$i]);
        }
        usleep(5000);
    }
    foreach ($pids as $i => $pid) {
        $how[$i] = 'killed at the deadline';
        exec('kill -9 ' . (int)$pid);
        pcntl_waitpid($pid, $status);
    }
    $out = [];
    for ($i = 0; $i < $n; $i++) {
        $f = "$dir/$i";
        $out[$i] = is_file($f) ? json_decode((string)file_get_contents($f), true) : null;
        if ($out[$i] === null) fwrite(STDERR, "run_forked: child $i gave no result ({$how[$i]})\n");
        @unlink($f);
    }
    @rmdir($dir);
    return $out;
}

$GLOBALS['__passed'] = 0;
$GLOBALS['__failed'] = 0;

function check(bool $cond, string $what): void {
    if ($cond) { $GLOBALS['__passed']++; }
    else { $GLOBALS['__failed']++; fwrite(STDERR, "FAIL: $what\n"); }
}

function eq($got, $want, string $what): void {
    $ok = $got === $want || (is_float($got) && is_float($want) && is_nan($got) && is_nan($want));
    if (!$ok) { $what .= ': got ' . var_export($got, true) . ', want ' . var_export($want, true); }
    check($ok, $what);
}

function test(string $name, callable $f): void {
    try { $f(); }
    catch (Throwable $e) { $GLOBALS['__failed']++; fwrite(STDERR, "FAIL: $name threw " . get_class($e) . ': ' . $e->getMessage() . "\n"); }
}

function finish(): void {
    printf("%d passed, %d failed\n", $GLOBALS['__passed'], $GLOBALS['__failed']);
    exit($GLOBALS['__failed'] > 0 ? 1 : 0);
}
