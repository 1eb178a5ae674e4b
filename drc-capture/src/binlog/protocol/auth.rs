//! Connection phase: the server's Initial Handshake v10, our
//! HandshakeResponse41, and the password scrambles of the supported
//! authentication plugins.
//!
//! Supported: `mysql_native_password` and the fast path of
//! `caching_sha2_password`. Full `caching_sha2_password` authentication,
//! `sha256_password` and `mysql_clear_password` need TLS (or RSA key
//! exchange), and TLS to the source is future work; MariaDB's `client_ed25519`
//! is not implemented. Each of those ends with an [`ProtocolError::Auth`]
//! that says what to change.

use sha1::{Digest, Sha1};
use sha2::Sha256;

use super::packet::Reader;
use super::ProtocolError;

/// Capability flags (the lower and upper 16 bits of the MySQL set).
pub mod caps {
    pub const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
    pub const CLIENT_LONG_FLAG: u32 = 0x0000_0004;
    pub const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
    pub const CLIENT_TRANSACTIONS: u32 = 0x0000_2000;
    pub const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
    pub const CLIENT_MULTI_RESULTS: u32 = 0x0002_0000;
    pub const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
    pub const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
}

/// Character set sent in the handshake response: utf8mb4_general_ci.
pub const CHARSET_UTF8MB4: u8 = 45;

pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// The fields of Initial Handshake v10 that the client uses.
#[derive(Debug, Clone)]
pub(crate) struct Handshake {
    pub server_version: String,
    pub connection_id: u32,
    /// The 20-byte scramble nonce (both parts, without the trailing NUL).
    pub nonce: Vec<u8>,
    pub capabilities: u32,
    pub auth_plugin: String,
}

pub(crate) fn parse_handshake(payload: &[u8]) -> Result<Handshake, ProtocolError> {
    let mut r = Reader::new(payload);
    let version = r.u8("initial handshake")?;
    if version != 10 {
        return Err(ProtocolError::Protocol(format!(
            "the source speaks handshake protocol version {version}; only version 10 (MySQL 4.1 and later, MariaDB) is supported"
        )));
    }
    let server_version = String::from_utf8_lossy(r.null_terminated()).into_owned();
    let connection_id = r.u32("initial handshake")?;
    let mut nonce = r.take(8, "initial handshake")?.to_vec();
    r.u8("initial handshake")?;
    let mut capabilities = u32::from(r.u16("initial handshake")?);
    let mut auth_plugin = String::new();
    if r.remaining() > 0 {
        let _charset = r.u8("initial handshake")?;
        let _status = r.u16("initial handshake")?;
        capabilities |= u32::from(r.u16("initial handshake")?) << 16;
        let data_len = usize::from(r.u8("initial handshake")?);
        // 10 reserved bytes (MariaDB keeps its extended capabilities in the last 4).
        r.take(10, "initial handshake")?;
        if capabilities & caps::CLIENT_SECURE_CONNECTION != 0 {
            let n = data_len.saturating_sub(8).max(13).min(r.remaining());
            let part2 = r.take(n, "initial handshake")?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            nonce.extend_from_slice(part2);
        }
        if capabilities & caps::CLIENT_PLUGIN_AUTH != 0 {
            auth_plugin = String::from_utf8_lossy(r.null_terminated()).into_owned();
        }
    }
    Ok(Handshake {
        server_version,
        connection_id,
        nonce,
        capabilities,
        auth_plugin,
    })
}

/// The capabilities we ask for, given the server's.
pub(crate) fn client_capabilities(server: u32) -> Result<u32, ProtocolError> {
    use caps::*;
    for (flag, name) in [
        (CLIENT_PROTOCOL_41, "CLIENT_PROTOCOL_41"),
        (CLIENT_SECURE_CONNECTION, "CLIENT_SECURE_CONNECTION"),
    ] {
        if server & flag == 0 {
            return Err(ProtocolError::Protocol(format!(
                "the source does not offer {name}; it is too old for DRC"
            )));
        }
    }
    // CLIENT_DEPRECATE_EOF is not requested: result sets end with classic EOF
    // packets, and the end of a non-blocking binlog dump is an EOF packet.
    // The result-set reader handles both forms anyway.
    let wanted = CLIENT_LONG_PASSWORD
        | CLIENT_LONG_FLAG
        | CLIENT_PROTOCOL_41
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | CLIENT_MULTI_RESULTS
        | CLIENT_PLUGIN_AUTH;
    Ok(wanted & server | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION)
}

/// HandshakeResponse41 (no TLS, no database, no connection attributes).
pub(crate) fn handshake_response(
    capabilities: u32,
    user: &str,
    auth_response: &[u8],
    plugin: &str,
) -> Result<Vec<u8>, ProtocolError> {
    if user.as_bytes().contains(&0) {
        return Err(ProtocolError::Auth(
            "the user name contains a NUL byte".into(),
        ));
    }
    let auth_len = u8::try_from(auth_response.len())
        .map_err(|_| ProtocolError::Auth("authentication response too long".into()))?;
    let mut out = Vec::with_capacity(64 + user.len() + auth_response.len() + plugin.len());
    out.extend_from_slice(&capabilities.to_le_bytes());
    out.extend_from_slice(&(1u32 << 30).to_le_bytes()); // max packet size: 1 GiB
    out.push(CHARSET_UTF8MB4);
    out.extend_from_slice(&[0u8; 23]);
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    out.push(auth_len);
    out.extend_from_slice(auth_response);
    if capabilities & caps::CLIENT_PLUGIN_AUTH != 0 {
        out.extend_from_slice(plugin.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// `mysql_native_password`: `SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))`;
/// an empty password sends an empty response.
pub fn scramble_native(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// `caching_sha2_password` fast path:
/// `SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce)`;
/// an empty password sends an empty response.
pub fn scramble_caching_sha2(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha256::digest(password);
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(nonce);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// The first authentication response for `plugin`, or why we cannot give one.
pub(crate) fn auth_response(
    plugin: &str,
    password: &str,
    nonce: &[u8],
) -> Result<Vec<u8>, ProtocolError> {
    let pw = password.as_bytes();
    match plugin {
        NATIVE_PASSWORD => Ok(scramble_native(pw, nonce)),
        CACHING_SHA2_PASSWORD => Ok(scramble_caching_sha2(pw, nonce)),
        "client_ed25519" => Err(ProtocolError::Auth(
            "the replication user authenticates with MariaDB's ed25519 plugin, which DRC does not support; \
             give it a mysql_native_password password (ALTER USER ... IDENTIFIED VIA mysql_native_password USING PASSWORD('...'))"
                .into(),
        )),
        "sha256_password" | "mysql_clear_password" => Err(ProtocolError::Auth(format!(
            "the replication user authenticates with {plugin}, which needs TLS, and TLS to the source is not supported yet; \
             use mysql_native_password (or caching_sha2_password with a cached password) for the replication user"
        ))),
        "dialog" | "auth_gssapi_client" | "authentication_kerberos_client" | "authentication_ldap_sasl_client" => {
            Err(ProtocolError::Auth(format!(
                "the replication user authenticates with the {plugin} plugin, which DRC does not support; use mysql_native_password"
            )))
        }
        other => Err(ProtocolError::Auth(format!(
            "the source asked for the unsupported authentication plugin {other:?}; use mysql_native_password for the replication user"
        ))),
    }
}

/// Error for caching_sha2_password's "perform full authentication" request.
pub(crate) fn full_auth_unsupported(user: &str) -> ProtocolError {
    ProtocolError::Auth(format!(
        "the source wants full caching_sha2_password authentication for user '{user}', which needs TLS or an RSA key \
         exchange; TLS to the source is not supported yet. Use mysql_native_password for the replication user, or \
         log in once with the same user over TLS (e.g. with the mysql client) so that the server caches the password"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    const NONCE: &[u8; 20] = b"abcdefghijklmnopqrst";

    #[test]
    fn native_scramble_known_vector() {
        // Computed independently: sha1(p) XOR sha1(nonce + sha1(sha1(p))).
        assert_eq!(
            hex(&scramble_native(b"p", NONCE)),
            "92982f1d0d47ce13bc946175aeedd35f1a514d3d"
        );
        assert_eq!(
            hex(&scramble_native(b"secret", NONCE)),
            "8817c50fa779daef010ee7577825b0847df9842e"
        );
        assert!(scramble_native(b"", NONCE).is_empty());
    }

    #[test]
    fn native_scramble_verifies_like_the_server() {
        // The server stores SHA1(SHA1(pw)) and checks SHA1(reply XOR SHA1(nonce + stored)) == stored.
        let pw = b"correct horse";
        let stored = Sha1::digest(Sha1::digest(pw));
        let reply = scramble_native(pw, NONCE);
        let mut h = Sha1::new();
        h.update(NONCE);
        h.update(stored);
        let mix = h.finalize();
        let stage1: Vec<u8> = reply.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(Sha1::digest(&stage1), stored);
    }

    #[test]
    fn caching_sha2_scramble_known_vector() {
        assert_eq!(
            hex(&scramble_caching_sha2(b"p", NONCE)),
            "fa54c48511635baf90f6c9405e78dc59a90729d855c854b886ebdb665efab77b"
        );
        assert!(scramble_caching_sha2(b"", NONCE).is_empty());
    }

    #[test]
    fn unsupported_plugins_explain_themselves() {
        let e = auth_response("client_ed25519", "x", NONCE)
            .expect_err("unsupported")
            .to_string();
        assert!(e.contains("ed25519"), "{e}");
        let e = auth_response("sha256_password", "x", NONCE)
            .expect_err("unsupported")
            .to_string();
        assert!(e.contains("TLS"), "{e}");
    }

    #[test]
    fn handshake_parses_and_survives_truncation() {
        let mut p = vec![10u8];
        p.extend_from_slice(b"10.11.6-MariaDB\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(&NONCE[..8]);
        p.push(0);
        let server_caps: u32 = 0xF7FE | (0x81BF << 16);
        p.extend_from_slice(&(server_caps as u16).to_le_bytes());
        p.push(8);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((server_caps >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0u8; 10]);
        p.extend_from_slice(&NONCE[8..]);
        p.push(0);
        p.extend_from_slice(b"mysql_native_password\0");
        let h = parse_handshake(&p).expect("parse");
        assert_eq!(h.server_version, "10.11.6-MariaDB");
        assert_eq!(h.connection_id, 7);
        assert_eq!(h.nonce, NONCE.to_vec());
        assert_eq!(h.auth_plugin, NATIVE_PASSWORD);
        assert_eq!(h.capabilities, server_caps);
        for n in 0..p.len() {
            let _ = parse_handshake(&p[..n]);
        }
    }
}
