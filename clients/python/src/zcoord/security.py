"""How a socket authenticates before `connect` (PROTOCOL §1): nothing over ipc, PLAIN over tcp
(user `zcoord`, the instance's secret), or CURVE when the server has a public key."""

from dataclasses import dataclass
from typing import Optional

import zmq

PLAIN_USER = b"zcoord"


@dataclass(frozen=True)
class CurveKeys:
    """A client key pair (Z85, 40 characters each) and the server's public key."""

    server_key: str
    public_key: str
    secret_key: str

    @staticmethod
    def generate(server_key: str) -> "CurveKeys":
        public, secret = zmq.curve_keypair()
        return CurveKeys(server_key, public.decode(), secret.decode())


@dataclass(frozen=True)
class Credentials:
    """What a socket presents: a PLAIN secret, CURVE keys, or nothing (ipc)."""

    secret: Optional[str] = None
    curve: Optional[CurveKeys] = None

    def apply(self, sock: zmq.Socket, endpoint: str) -> None:  # type: ignore[type-arg]
        """Sets the socket options; call before `connect`. ipc endpoints need none."""
        if not endpoint.startswith("tcp://"):
            return
        if self.curve is not None:
            sock.curve_serverkey = self.curve.server_key.encode()
            sock.curve_publickey = self.curve.public_key.encode()
            sock.curve_secretkey = self.curve.secret_key.encode()
        elif self.secret:
            sock.plain_username = PLAIN_USER
            sock.plain_password = self.secret.encode()
