//! CPython's connection handshake (`deliver_challenge` and
//! `answer_challenge` in `multiprocessing/connection.py`), both versions.
//!
//! The side that challenges sends `#CHALLENGE#` and a message; the other
//! side answers with an HMAC of the message under the shared key; the
//! challenger replies `#WELCOME#` or `#FAILURE#`. CPython 3.12 and later
//! send `{sha256}` and 40 random bytes, and take an answer `{sha256}` +
//! HMAC-SHA256 of the whole message, prefix included. CPython 3.11 and
//! older send a bare 20-byte nonce and answer any challenge with a raw
//! 16-byte HMAC-MD5. We challenge as 3.12 does and, as 3.12 does, accept
//! the legacy MD5 answer, so that 3.11 peers can connect; we answer both
//! kinds, and a challenge in any digest CPython allows (md5, sha256,
//! sha384, sha3_256, sha3_384). A challenge under 20 bytes is refused. Digests are compared in
//! constant time.

use std::io;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use md5::Md5;
use multiproc_process::{Error, Result};
use sha2::{Sha256, Sha384};
use sha3::{Sha3_256, Sha3_384};

use super::SocketConnection;
use super::stream::Pace;

/// The longest handshake message CPython reads (`recv_bytes(256)`).
pub(crate) const HANDSHAKE_MAX: u64 = 256;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// The digest we ask for.
const OFFERED: &[u8] = b"{sha256}";
/// Random bytes after the digest name, as CPython 3.12 sends.
const NONCE_BYTES: usize = 40;
/// CPython's `_MD5ONLY_MESSAGE_LENGTH`: the shortest challenge, and the
/// length of a legacy one.
const MIN_CHALLENGE: usize = 20;
/// The length of a legacy answer: a raw HMAC-MD5.
const MD5_LEN: usize = 16;

fn mac<M: Mac + KeyInit>(authkey: &[u8], message: &[u8]) -> M {
    let mut mac = <M as KeyInit>::new_from_slice(authkey)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(message);
    mac
}

/// The HMAC of `message` under `authkey`, as bytes.
fn digest<M: Mac + KeyInit>(authkey: &[u8], message: &[u8]) -> Vec<u8> {
    mac::<M>(authkey, message).finalize().into_bytes().to_vec()
}

fn auth(why: impl Into<String>) -> Error {
    Error::Auth(why.into())
}

/// Sends a challenge and checks the answer.
pub(crate) fn deliver(conn: &SocketConnection, authkey: &[u8], pace: Pace) -> Result<()> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
    let mut challenge = Vec::with_capacity(CHALLENGE.len() + OFFERED.len() + NONCE_BYTES);
    challenge.extend_from_slice(CHALLENGE);
    challenge.extend_from_slice(OFFERED);
    challenge.extend_from_slice(&nonce);
    conn.send_bytes(&challenge)?;
    let answer = conn.recv_frame_paced(pace, HANDSHAKE_MAX)?;
    let message = &challenge[CHALLENGE.len()..];
    let verified = if answer.len() == MD5_LEN {
        // CPython 3.11 and older answer every challenge this way.
        mac::<Hmac<Md5>>(authkey, message)
            .verify_slice(&answer)
            .is_ok()
    } else if let Some(digest) = answer.strip_prefix(OFFERED) {
        mac::<Hmac<Sha256>>(authkey, message)
            .verify_slice(digest)
            .is_ok()
    } else {
        // A digest we did not offer: refused, like a wrong one.
        false
    };
    if verified {
        conn.send_bytes(WELCOME)
    } else {
        // Best effort: the other side learns why before the connection goes.
        let _ = conn.send_bytes(FAILURE);
        conn.close();
        Err(auth("the other side does not know the key"))
    }
}

/// Answers a challenge and reads the verdict.
pub(crate) fn answer(conn: &SocketConnection, authkey: &[u8], pace: Pace) -> Result<()> {
    let challenge = conn.recv_frame_paced(pace, HANDSHAKE_MAX)?;
    let reply = match respond(authkey, &challenge) {
        Ok(reply) => reply,
        Err(e) => {
            conn.close();
            return Err(e);
        }
    };
    conn.send_bytes(&reply)?;
    let verdict = conn.recv_frame_paced(pace, HANDSHAKE_MAX)?;
    if verdict == WELCOME {
        Ok(())
    } else {
        conn.close();
        Err(auth("the other side refused our key"))
    }
}

/// The answer to a challenge, in the digest it names (none: legacy MD5).
fn respond(authkey: &[u8], challenge: &[u8]) -> Result<Vec<u8>> {
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(auth("the other side sent no challenge"));
    };
    if message.len() < MIN_CHALLENGE {
        return Err(auth(format!(
            "the other side's challenge is {} bytes, under {MIN_CHALLENGE}",
            message.len()
        )));
    }
    if message.len() == MIN_CHALLENGE {
        // A legacy challenge (CPython 3.11 and older): a raw HMAC-MD5.
        return Ok(digest::<Hmac<Md5>>(authkey, message));
    }
    let name = message
        .strip_prefix(b"{")
        .and_then(|rest| {
            rest.iter()
                .take(11)
                .position(|&b| b == b'}')
                .map(|i| &rest[..i])
        })
        .ok_or_else(|| auth("the other side's challenge names no digest"))?;
    let digest = match name {
        b"sha256" => digest::<Hmac<Sha256>>(authkey, message),
        b"sha384" => digest::<Hmac<Sha384>>(authkey, message),
        b"md5" => digest::<Hmac<Md5>>(authkey, message),
        b"sha3_256" => digest::<Hmac<Sha3_256>>(authkey, message),
        b"sha3_384" => digest::<Hmac<Sha3_384>>(authkey, message),
        other => {
            return Err(auth(format!(
                "the other side asks for digest {}, which CPython does not allow either",
                String::from_utf8_lossy(other)
            )));
        }
    };
    let mut reply = Vec::with_capacity(name.len() + 2 + digest.len());
    reply.push(b'{');
    reply.extend_from_slice(name);
    reply.push(b'}');
    reply.extend_from_slice(&digest);
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_each_kind_of_challenge_as_cpython_does() {
        // A 3.12 challenge: the HMAC covers the `{sha256}` prefix too.
        let mut c = CHALLENGE.to_vec();
        c.extend_from_slice(b"{sha256}");
        c.extend_from_slice(&[7u8; 40]);
        let r = respond(b"key", &c).unwrap();
        assert!(r.starts_with(b"{sha256}"));
        let mut m = mac::<Hmac<Sha256>>(b"key", &c[CHALLENGE.len()..]);
        m.update(b"");
        assert_eq!(&r[8..], &m.finalize().into_bytes()[..]);
        // The other digests CPython allows, checked against Python's
        // `hmac.new(b"key", message, name).hexdigest()`.
        for (name, want) in [
            (
                "sha3_256",
                "97886b8896d340246e5971599e7517605b370c89478f8d1750e3ad5d6ce0844f",
            ),
            (
                "sha384",
                "9503d25c58b2c162781fef7ca132702e9cded04a747306832bb9a874b8c3572a\
                 589bca2e8925e66fcde4869a427ae425",
            ),
        ] {
            let mut c = CHALLENGE.to_vec();
            c.extend_from_slice(format!("{{{name}}}").as_bytes());
            c.extend_from_slice(&[7u8; 40]);
            let r = respond(b"key", &c).unwrap();
            let prefix = format!("{{{name}}}");
            assert!(r.starts_with(prefix.as_bytes()));
            let hex: String = r[prefix.len()..]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(hex, want, "{name}");
        }
        // A 3.11 challenge: 20 bare bytes, a raw MD5 answer.
        let mut legacy = CHALLENGE.to_vec();
        legacy.extend_from_slice(&[9u8; 20]);
        assert_eq!(respond(b"key", &legacy).unwrap().len(), MD5_LEN);
        // Too short, no prefix, unknown digest: refused.
        let mut short = CHALLENGE.to_vec();
        short.extend_from_slice(&[1u8; 19]);
        assert!(matches!(respond(b"key", &short), Err(Error::Auth(_))));
        assert!(matches!(respond(b"key", CHALLENGE), Err(Error::Auth(_))));
        let mut odd = CHALLENGE.to_vec();
        odd.extend_from_slice(b"{blake2}");
        odd.extend_from_slice(&[1u8; 40]);
        assert!(matches!(respond(b"key", &odd), Err(Error::Auth(_))));
        assert!(matches!(respond(b"key", b"#WELCOME#"), Err(Error::Auth(_))));
    }
}
