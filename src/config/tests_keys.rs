//! Unit tests of the optional keys that came after the specification's
//! (`metrics_listen`, `accept_proxy_protocol`): read, defaulted, checked,
//! named in errors and printed by `describe`.

use super::tests::{MIN_SERVER, client, client_with, err_of, server, server_with};

#[test]
fn metrics_listen_is_optional_and_an_address() {
    assert_eq!(server(MIN_SERVER).unwrap().ops.metrics_listen, None);
    assert!(
        server(MIN_SERVER)
            .unwrap()
            .describe()
            .contains("# metrics_listen: not set")
    );
    let s = server_with("metrics_listen = \"127.0.0.1:9464\"").unwrap();
    assert_eq!(
        s.ops.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert!(
        s.describe()
            .contains("\nmetrics_listen = \"127.0.0.1:9464\"\n")
    );
    assert_eq!(server(&s.describe()).unwrap(), s);
    let c = client_with("metrics_listen = \"[::1]:0\"").unwrap();
    assert_eq!(c.ops.metrics_listen, Some("[::1]:0".parse().unwrap()));
    assert_eq!(client(&c.describe()).unwrap(), c);
    for bad in [
        "\"localhost:9464\"",
        "\"127.0.0.1\"",
        "\"::1:9464\"",
        "\"\"",
    ] {
        let e = err_of(client_with(&format!("metrics_listen = {bad}")));
        assert_eq!(e.key(), Some("client.metrics_listen"), "{bad}");
        assert!(e.to_string().contains("127.0.0.1:9464"), "{e}");
    }
    let e = err_of(server_with("metrics_listen = 9464"));
    assert_eq!(e.key(), Some("server.metrics_listen"));
}

#[test]
fn accept_proxy_protocol_is_a_server_key_off_by_default() {
    let s = server(MIN_SERVER).unwrap();
    assert!(!s.accept_proxy_protocol);
    assert!(s.describe().contains("\naccept_proxy_protocol = false\n"));
    let s = server_with("accept_proxy_protocol = true").unwrap();
    assert!(s.accept_proxy_protocol);
    assert!(s.describe().contains("\naccept_proxy_protocol = true\n"));
    assert_eq!(server(&s.describe()).unwrap(), s);
    assert!(
        !server_with("accept_proxy_protocol = false")
            .unwrap()
            .accept_proxy_protocol
    );
    let e = err_of(server_with("accept_proxy_protocol = \"yes\""));
    assert_eq!(e.key(), Some("server.accept_proxy_protocol"));
    assert_eq!(e.line(), Some(9));
    assert!(e.to_string().contains("expected a boolean"), "{e}");
    // A client has links to make, not to accept: not a client key.
    let e = err_of(client_with("accept_proxy_protocol = true"));
    assert_eq!(
        e.to_string(),
        "x.toml:10: unknown key `client.accept_proxy_protocol`"
    );
}

#[test]
fn cipher_is_auto_by_default_or_names_one_for_encrypted_links() {
    use crate::proto::cipher::Cipher;
    const SECRET: &str = "secret = \"0123456789abcdef0123\"";
    let s = server_with(SECRET).unwrap();
    assert_eq!(s.tunnel.cipher, None);
    assert!(
        s.describe().contains("\ncipher = \"auto\"\n"),
        "{}",
        s.describe()
    );
    for (name, cipher) in [
        ("aegis-256x2", Cipher::Aegis256X2),
        ("aes-256-gcm", Cipher::AesGcm),
        ("chacha20-poly1305", Cipher::ChaChaPoly),
    ] {
        let c = client_with(&format!("{SECRET}\ncipher = \"{name}\"")).unwrap();
        assert_eq!(c.tunnel.cipher, Some(cipher));
        assert!(c.describe().contains(&format!("\ncipher = \"{name}\"\n")));
    }
    assert_eq!(
        client_with(&format!("{SECRET}\ncipher = \"auto\""))
            .unwrap()
            .tunnel
            .cipher,
        None
    );
    let e = err_of(server_with(&format!("{SECRET}\ncipher = \"aes-128-gcm\"")));
    assert_eq!(e.key(), Some("server.cipher"));
    assert!(e.to_string().contains("aegis-256x2"), "{e}");
    // A cipher named for links that are not sealed is a mistake.
    for extra in [
        "cipher = \"aes-256-gcm\"".to_string(),
        format!("{SECRET}\nencrypt = false\ncipher = \"aes-256-gcm\""),
    ] {
        let e = err_of(client_with(&extra));
        assert_eq!(e.key(), Some("client.cipher"), "{extra}");
        assert!(e.to_string().contains("needs encrypted links"), "{e}");
    }
}
