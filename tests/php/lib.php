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

/** One memcached stat (raw protocol, no client involved). */
function mc_stat(string $addr, string $name): ?string {
    $c = stream_socket_client("tcp://$addr", $e, $s, 1.0);
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
