"""`hebbian-mirror stack` refuses a port in use before starting anything."""

from __future__ import annotations

import socket

from ..server_process import free_port


def test_a_port_in_use_is_refused_before_anything_starts(cli, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = {"--port": free_port(), "--ui-port": free_port(), "--mlflow-port": free_port()}
        for option in ports:
            args = [str(a) for pair in (ports | {option: taken}).items() for a in pair]
            code, stdout, stderr = cli("stack", "--dir", tmp_path / "stack", *args)
            assert code == 1 and f"port {taken} on 127.0.0.1 is already in use" in stderr, (option, stderr)
            assert option in stderr and "Traceback" not in stderr and not stdout.strip()
            assert not (tmp_path / "stack").exists()  # no log folder: nothing was started
    code, _, stderr = cli("stack", "--port", "8000", "--ui-port", "8000")
    assert code == 1 and "three different ports" in stderr, stderr
