//! The client side of ZeroMQ PLAIN over tcp: the user name every zcoord server expects and the
//! socket options a client sets before `connect` (PROTOCOL §1).

/// The PLAIN user name; the password is the instance's secret.
pub const PLAIN_USERNAME: &str = "zcoord";

/// Makes `sock` present the PLAIN credentials for `secret`. Set before `connect`.
pub fn present_plain(sock: &zmq::Socket, secret: &str) -> Result<(), zmq::Error> {
    sock.set_plain_username(Some(PLAIN_USERNAME))?;
    sock.set_plain_password(Some(secret))
}
