//! Secured listeners with real clients (confluent-kafka and kcat, both librdkafka):
//! SASL_SSL with SCRAM-SHA-512 users made by `samsa user add`, SSL with client
//! certificates; a wrong password, an unknown user and an untrusted certificate are each
//! refused; nothing but the SASL exchange is served before authentication, and garbage
//! closes only its own connection. Certificates come from the `openssl` command.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use samsa_tests::{kcat, run_python, run_samsa, wait_until, SamsaServer};

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl").args(args).current_dir(dir).output().context("running openssl (scripts/setup-test.sh installs it)")?;
    ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// A CA, a server certificate for 127.0.0.1, a client certificate for CN=alice,O=shop,
/// and a client certificate from another CA (CN=mallory).
fn pki(dir: &Path) -> Result<()> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for (ca, cn) in [("ca", "Samsa Test CA"), ("evil-ca", "Evil CA")] {
        let subj = format!("/CN={cn}");
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
        openssl(dir, &args)?;
    }
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")?;
    for (name, subj, ca, ext) in
        [("server", "/CN=localhost", "ca", "server.ext"), ("alice", "/O=shop/CN=alice", "ca", "client.ext"), ("mallory", "/CN=mallory", "evil-ca", "client.ext")]
    {
        let (key, csr, pem, ca_pem, ca_key) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{ca}.pem"), format!("{ca}.key"));
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", subj]);
        openssl(dir, &args)?;
        openssl(dir, &["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial", "-out", &pem, "-days", "2", "-extfile", ext])?;
    }
    Ok(())
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

/// confluent-kafka: produce and consume `n` records (n = 0: only metadata; the error).
fn confluent(addr: &str, topic: &str, n: usize, settings: &[String]) -> Result<std::collections::HashMap<String, String>> {
    let mut args = vec![addr.to_string(), topic.to_string(), n.to_string()];
    args.extend(settings.iter().cloned());
    run_python("security_client.py", &args)?.result()
}

/// One Kafka request frame: header v1 (key, version, correlation id 7, client id "t") + body.
fn frame(key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&7i32.to_be_bytes());
    f.extend_from_slice(&1i16.to_be_bytes());
    f.push(b't');
    f.extend_from_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend(f);
    out
}

/// Sends `bytes` on a fresh connection; what came back before the server closed it (or
/// the read timed out).
fn exchange(addr: &str, bytes: &[u8]) -> Result<(Vec<u8>, bool)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(bytes)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok((got, true)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Ok((got, false)),
            Err(_) => return Ok((got, true)),
        }
    }
}

#[test]
fn sasl_ssl_with_scram_serves_confluent_kafka_and_kcat_and_refuses_bad_credentials_and_garbage() -> Result<()> {
    let certs = tempfile::tempdir()?;
    let dir = certs.path();
    pki(dir)?;
    let server = SamsaServer::builder()
        .set("listeners", "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0")
        .set("ssl.certificate.location", path(dir, "server.pem"))
        .set("ssl.key.location", path(dir, "server.key"))
        .start()?;
    let sasl_ssl = server.listener("SASL_SSL").context("no SASL_SSL listener line")?.to_string();
    let sasl_plain = server.listener("SASL_PLAINTEXT").context("no SASL_PLAINTEXT listener line")?.to_string();
    // The first user is made over the PLAINTEXT listener.
    let out =
        run_samsa(&["user", "add", "alice", "--mechanism", "SCRAM-SHA-512", "--password", "alice-secret", "--bootstrap", server.bootstrap()], Duration::from_secs(30))?.ok()?;
    ensure!(out.contains("user alice: SCRAM-SHA-512 password set"), "{out}");
    let list = run_samsa(&["user", "list", "--bootstrap", server.bootstrap()], Duration::from_secs(30))?.ok()?;
    ensure!(list.contains("alice") && list.contains("SCRAM-SHA-512 (8192 iterations)"), "{list}");

    let settings = |user: &str, password: &str| {
        vec![
            "security.protocol=SASL_SSL".to_string(),
            "sasl.mechanism=SCRAM-SHA-512".to_string(),
            format!("sasl.username={user}"),
            format!("sasl.password={password}"),
            format!("ssl.ca.location={}", path(dir, "ca.pem")),
        ]
    };
    let r = confluent(&sasl_ssl, "secured", 25, &settings("alice", "alice-secret"))?;
    ensure!(r.get("consumed").map(String::as_str) == Some("25"), "{r:?}");
    // kcat reads them back over the same listener, and writes one more.
    let mut kcat_args: Vec<String> = vec!["-b".into(), sasl_ssl.clone()];
    for s in settings("alice", "alice-secret") {
        kcat_args.extend(["-X".to_string(), s]);
    }
    let mut consume = kcat_args.clone();
    consume.extend(["-C", "-t", "secured", "-o", "beginning", "-e", "-c", "25", "-f", "%s\n"].map(String::from));
    let got = kcat().args(consume).run()?.stdout;
    ensure!(got.lines().count() == 25 && got.lines().any(|l| l == "v24"), "kcat read:\n{got}");

    // Samsa's own tools speak SASL_SSL too: with -X (produce, consume) or --command-config.
    let mut x: Vec<String> = Vec::new();
    for s in settings("alice", "alice-secret") {
        x.extend(["-X".to_string(), s]);
    }
    let mut args: Vec<&str> = vec!["consume", "secured", "--bootstrap", &sasl_ssl, "--from-beginning", "--max-messages", "25"];
    args.extend(x.iter().map(String::as_str));
    let got = run_samsa(&args, Duration::from_secs(60))?.ok()?;
    ensure!(got.lines().count() == 25 && got.lines().any(|l| l == "v7"), "samsa consume over SASL_SSL:\n{got}");
    let conf = dir.join("client.properties");
    std::fs::write(&conf, settings("alice", "alice-secret").join("\n") + "\n")?;
    let conf = conf.display().to_string();
    let topics = run_samsa(&["topic", "list", "--bootstrap", &sasl_ssl, "--command-config", &conf], Duration::from_secs(30))?.ok()?;
    ensure!(topics.contains("secured"), "samsa topic list over SASL_SSL:\n{topics}");
    std::fs::write(dir.join("wrong.properties"), settings("alice", "nope").join("\n") + "\n")?;
    let wrong = dir.join("wrong.properties").display().to_string();
    let e = run_samsa(&["topic", "list", "--bootstrap", &sasl_ssl, "--command-config", &wrong], Duration::from_secs(30))?.failed()?;
    ensure!(e.contains("SASL authentication with SCRAM-SHA-512 as alice") && e.contains("invalid credentials") && e.contains("Kafka error 58"), "{e}");

    // Wrong password, unknown user: SASL_AUTHENTICATION_FAILED, which librdkafka reports
    // as an authentication error carrying the broker's message.
    for (user, password) in [("alice", "wrong"), ("nobody", "alice-secret")] {
        let r = confluent(&sasl_ssl, "secured", 0, &settings(user, password))?;
        ensure!(r.get("error").map(String::as_str) == Some("_AUTHENTICATION"), "{user}/{password}: {r:?}");
        ensure!(r.get("text").is_some_and(|t| t.contains("invalid_credentials")), "{user}/{password}: {r:?}");
    }
    ensure!(server.stderr().contains("SASL authentication failed"), "no log line for the refusals");

    // Before authenticating, only ApiVersions and the SASL exchange are served: Metadata
    // closes the connection with no answer; ApiVersions is answered.
    let (answer, closed) = exchange(&sasl_plain, &frame(3, 0, &0i32.to_be_bytes()))?;
    ensure!(answer.is_empty() && closed, "Metadata before SASL got {} bytes (closed: {closed})", answer.len());
    let (answer, _) = exchange(&sasl_plain, &frame(18, 0, &[]))?;
    ensure!(answer.len() > 8 && answer[4..8] == 7i32.to_be_bytes(), "no ApiVersions answer before SASL");
    // Garbage instead of a handshake (plain and TLS ports) closes only that connection.
    let junk: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
    // A frame announcing 9 MB, and a small well-framed one that is no request.
    let small = [&40i32.to_be_bytes()[..], &junk[..40]].concat();
    for (addr, bytes) in [(&sasl_plain, &junk), (&sasl_plain, &small), (&sasl_ssl, &junk)] {
        let (answer, closed) = exchange(addr, bytes)?;
        ensure!(answer.is_empty() || addr == &sasl_ssl, "garbage got an answer on {addr}");
        ensure!(closed, "garbage did not close the connection on {addr}");
    }
    let r = confluent(&sasl_ssl, "secured-after", 5, &settings("alice", "alice-secret"))?;
    ensure!(r.get("consumed").map(String::as_str) == Some("5"), "after garbage: {r:?}");
    // SASL/PLAIN accepts the same password (on the SASL_PLAINTEXT listener).
    let plain = ["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN", "sasl.username=alice", "sasl.password=alice-secret"].map(String::from);
    let r = confluent(&sasl_plain, "secured", 0, &plain)?;
    ensure!(r.get("error").map(String::as_str) == Some("none"), "PLAIN: {r:?}");
    // Deleting the credential refuses the user from then on.
    run_samsa(&["user", "delete", "alice", "--mechanism", "SCRAM-SHA-512", "--bootstrap", server.bootstrap()], Duration::from_secs(30))?.ok()?;
    let r = confluent(&sasl_ssl, "secured", 0, &settings("alice", "alice-secret"))?;
    ensure!(r.get("error").map(String::as_str) == Some("_AUTHENTICATION"), "after delete: {r:?}");
    Ok(())
}

#[test]
fn ssl_with_client_certificates_names_the_principal_and_refuses_untrusted_certificates() -> Result<()> {
    let certs = tempfile::tempdir()?;
    let dir = certs.path();
    pki(dir)?;
    let server = SamsaServer::builder()
        .set("listeners", "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0")
        .set("ssl.certificate.location", path(dir, "server.pem"))
        .set("ssl.key.location", path(dir, "server.key"))
        .set("ssl.ca.location", path(dir, "ca.pem"))
        .set("ssl.client.auth", "required")
        .start()?;
    let ssl = server.listener("SSL").context("no SSL listener line")?.to_string();
    let settings = |who: &str| {
        let mut s = vec!["security.protocol=SSL".to_string(), format!("ssl.ca.location={}", path(dir, "ca.pem"))];
        if !who.is_empty() {
            s.push(format!("ssl.certificate.location={}", path(dir, &format!("{who}.pem"))));
            s.push(format!("ssl.key.location={}", path(dir, &format!("{who}.key"))));
        }
        s
    };
    let r = confluent(&ssl, "tls-topic", 10, &settings("alice"))?;
    ensure!(r.get("consumed").map(String::as_str) == Some("10"), "{r:?}");
    wait_until(Duration::from_secs(10), "the principal in the log", || Ok(server.stderr().contains("principal=User:CN=alice,O=shop")))?;
    let mut args: Vec<String> = vec!["-b".into(), ssl.clone()];
    for s in settings("alice") {
        args.extend(["-X".to_string(), s]);
    }
    args.extend(["-C", "-t", "tls-topic", "-o", "beginning", "-e", "-c", "10"].map(String::from));
    let got = kcat().args(args).run()?.stdout;
    ensure!(got.lines().count() == 10, "kcat read:\n{got}");
    // Samsa's consumer with the same client certificate.
    let mut args: Vec<String> = ["consume", "tls-topic", "--bootstrap", &ssl, "--from-beginning", "--max-messages", "10"].map(String::from).to_vec();
    for s in settings("alice") {
        args.extend(["-X".to_string(), s]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let got = run_samsa(&args, Duration::from_secs(60))?.ok()?;
    ensure!(got.lines().count() == 10, "samsa consume over SSL:\n{got}");
    // A certificate from another CA, and no certificate at all, are refused in the TLS
    // handshake.
    for who in ["mallory", ""] {
        let r = confluent(&ssl, "tls-topic", 0, &settings(who))?;
        let error = r.get("error").cloned().unwrap_or_default();
        if error == "none" {
            bail!("{who:?} was let in: {r:?}");
        }
        // librdkafka names the TLS failure (the broker's alert, or its closing the handshake).
        ensure!(error == "_SSL" || r.get("text").is_some_and(|t| t.contains("SSL")), "{who:?}: not a TLS failure: {r:?}");
    }
    let log = server.stderr();
    ensure!(log.contains("TLS handshake failed"), "no log line for the refused handshakes:\n{log}");

    // A new certificate in the same files is served without a restart.
    ensure!(served_subject(&ssl, dir)?.contains("CN = localhost"), "the first certificate");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", "next.key", "-out", "next.csr", "-subj", "/CN=reloaded"]);
    openssl(dir, &args)?;
    openssl(dir, &["x509", "-req", "-in", "next.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "next.pem", "-days", "2", "-extfile", "server.ext"])?;
    std::fs::rename(dir.join("next.key"), dir.join("server.key"))?;
    std::fs::rename(dir.join("next.pem"), dir.join("server.pem"))?;
    wait_until(Duration::from_secs(15), "the reloaded certificate", || Ok(served_subject(&ssl, dir)?.contains("CN = reloaded")))?;
    ensure!(server.stderr().contains("reloaded the TLS certificate"), "no log line for the reload");
    let r = confluent(&ssl, "tls-topic", 0, &settings("alice"))?;
    ensure!(r.get("error").map(String::as_str) == Some("none"), "after the reload: {r:?}");
    Ok(())
}

/// The subject of the certificate a TLS listener serves now (`openssl s_client`, with
/// alice's client certificate).
fn served_subject(addr: &str, dir: &Path) -> Result<String> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-CAfile", "ca.pem", "-cert", "alice.pem", "-key", "alice.key"])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let subject = text.lines().find(|l| l.trim_start().starts_with("subject=")).unwrap_or_default().to_string();
    Ok(subject)
}

/// `acl_client.py` as `user`: the RESULT fields.
fn as_user(addr: &str, user: &str, action: &str, topic: &str, group: Option<&str>) -> Result<std::collections::HashMap<String, String>> {
    let mut args = vec![addr, user, "pw-of-user", action, topic];
    args.extend(group);
    run_python("acl_client.py", &args)?.result()
}

#[test]
fn acls_allow_deny_by_prefix_and_by_group_with_deny_winning_and_unlisted_topics_hidden() -> Result<()> {
    let server = SamsaServer::builder()
        .set("listeners", "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0")
        .set("authorizer.enabled", "true")
        // The PLAINTEXT listener (loopback) is the operator's: `samsa user` and `samsa acl`.
        .set("super.users", "User:ANONYMOUS")
        .start()?;
    let sasl = server.listener("SASL_PLAINTEXT").context("no SASL_PLAINTEXT listener line")?.to_string();
    let b = server.bootstrap().to_string();
    let samsa = |args: &[&str]| -> Result<String> {
        let mut all = args.to_vec();
        all.extend(["--bootstrap", &b]);
        run_samsa(&all, Duration::from_secs(30))?.ok()
    };
    for user in ["bob", "dave", "carol", "eve"] {
        samsa(&["user", "add", user, "--mechanism", "SCRAM-SHA-256", "--password", "pw-of-user"])?;
    }
    for t in ["audit", "shop-eu", "shop-us", "shop-secret", "other"] {
        samsa(&["topic", "create", t])?;
    }
    // bob writes audit but may not read it; dave reads audit but has no group.
    samsa(&["acl", "add", "--topic", "audit", "--allow-principal", "User:bob", "--operation", "Write"])?;
    samsa(&["acl", "add", "--group", "bob-group", "--allow-principal", "User:bob", "--operation", "Read"])?;
    samsa(&["acl", "add", "--topic", "audit", "--allow-principal", "User:dave", "--operation", "Read"])?;
    // carol writes every shop- topic except shop-secret.
    let out = samsa(&["acl", "add", "--topic", "shop-", "--resource-pattern-type", "prefixed", "--allow-principal", "User:carol", "--operation", "Write"])?;
    ensure!(out.contains("added (principal=User:carol, host=*, operation=Write, permissionType=ALLOW) on Topic:PREFIXED:shop-"), "{out}");
    samsa(&["acl", "add", "--topic", "shop-secret", "--deny-principal", "User:carol", "--operation", "Write"])?;
    let listed = samsa(&["acl", "list"])?;
    ensure!(listed.lines().count() == 6 && listed.contains("Topic:PREFIXED:shop-") && listed.contains("DENY"), "acl list:\n{listed}");

    let want = |r: std::collections::HashMap<String, String>, key: &str, value: &str, what: &str| -> Result<()> {
        ensure!(r.get(key).map(String::as_str) == Some(value), "{what}: want {key}={value}, got {r:?}");
        Ok(())
    };
    want(as_user(&sasl, "bob", "produce", "audit", None)?, "ok", "1", "bob writes audit")?;
    want(as_user(&sasl, "bob", "consume", "audit", Some("bob-group"))?, "error", "TOPIC_AUTHORIZATION_FAILED", "bob reads audit")?;
    want(as_user(&sasl, "dave", "consume", "audit", Some("dave-group"))?, "error", "GROUP_AUTHORIZATION_FAILED", "dave's group")?;
    for t in ["shop-eu", "shop-us"] {
        want(as_user(&sasl, "carol", "produce", t, None)?, "ok", "1", &format!("carol writes {t} (prefixed)"))?;
    }
    want(as_user(&sasl, "carol", "produce", "other", None)?, "error", "TOPIC_AUTHORIZATION_FAILED", "carol writes other")?;
    want(as_user(&sasl, "carol", "produce", "shop-secret", None)?, "error", "TOPIC_AUTHORIZATION_FAILED", "deny beats allow")?;
    want(as_user(&sasl, "eve", "produce", "audit", None)?, "error", "TOPIC_AUTHORIZATION_FAILED", "eve has no ACL")?;
    // Metadata lists only the topics a user may describe (Write implies Describe).
    want(as_user(&sasl, "carol", "topics", "-", None)?, "topics", "shop-eu,shop-secret,shop-us", "carol's topics")?;
    want(as_user(&sasl, "eve", "topics", "-", None)?, "topics", "", "eve's topics")?;
    // Removing the prefixed ACL takes carol's writes away.
    let out = samsa(&["acl", "remove", "--topic", "shop-", "--resource-pattern-type", "prefixed"])?;
    ensure!(out.contains("removed (principal=User:carol"), "{out}");
    want(as_user(&sasl, "carol", "produce", "shop-eu", None)?, "error", "TOPIC_AUTHORIZATION_FAILED", "after remove")?;
    Ok(())
}

#[test]
fn the_servers_own_sql_engine_acts_as_the_principal_it_is_configured_with() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let internal = dir.path().join("internal.properties");
    std::fs::write(&internal, "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=sqlsvc\nsasl.password=svc-secret\n")?;
    let admin = dir.path().join("admin.properties");
    std::fs::write(&admin, "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=admin\nsasl.password=admin-secret\n")?;
    let server = SamsaServer::builder()
        .set("listeners", "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0")
        .set("authorizer.enabled", "true")
        .set("super.users", "User:admin;User:sqlsvc")
        .set("internal.listener", "SASL_PLAINTEXT")
        .set("internal.client.config", internal.display())
        .start()?;
    let sasl = server.listener("SASL_PLAINTEXT").context("no SASL_PLAINTEXT listener line")?.to_string();
    let (admin, plain) = (admin.display().to_string(), server.bootstrap().to_string());
    // The first user from loopback PLAINTEXT; the next ones by that (super) user over SASL.
    run_samsa(&["user", "add", "admin", "--mechanism", "SCRAM-SHA-256", "--password", "admin-secret", "--bootstrap", &plain], Duration::from_secs(30))?.ok()?;
    let e = run_samsa(&["user", "add", "mallory", "--mechanism", "SCRAM-SHA-256", "--password", "x", "--bootstrap", &plain], Duration::from_secs(30))?.failed()?;
    ensure!(e.contains("CLUSTER_AUTHORIZATION_FAILED") || e.contains("Kafka error 31"), "a second user from PLAINTEXT: {e}");
    run_samsa(&["user", "add", "sqlsvc", "--mechanism", "SCRAM-SHA-256", "--password", "svc-secret", "--bootstrap", &sasl, "--command-config", &admin], Duration::from_secs(30))?
        .ok()?;
    let api = server.http_addr();
    for statement in ["CREATE STREAM notes (body VARCHAR) WITH (topic = 'notes', format = 'json', partitions = 1)", "INSERT INTO notes VALUES ('hello'), ('world')"] {
        let (status, text) = samsa_tests::http(api, "POST", "/sql", &serde_json::json!({ "sql": statement }).to_string())?;
        ensure!(status == 200, "{statement}: {status} {text}\n{}", server.stderr());
    }
    let (status, text) = samsa_tests::http(api, "POST", "/sql", &serde_json::json!({ "sql": "SELECT body FROM notes ORDER BY body" }).to_string())?;
    ensure!(status == 200 && text.contains("hello") && text.contains("world"), "{status} {text}");
    ensure!(server.stderr().contains("principal=User:sqlsvc"), "the SQL engine did not authenticate as sqlsvc:\n{}", server.stderr());
    // Unauthenticated clients see nothing of it.
    let topics = run_samsa(&["topic", "list", "--bootstrap", &plain], Duration::from_secs(30))?.ok()?;
    ensure!(!topics.contains("notes"), "User:ANONYMOUS sees: {topics}");
    let topics = run_samsa(&["topic", "list", "--bootstrap", &sasl, "--command-config", &admin], Duration::from_secs(30))?.ok()?;
    ensure!(topics.contains("notes"), "the admin sees: {topics}");
    Ok(())
}

#[test]
fn brokers_replicate_over_sasl_as_their_own_principal_with_the_authorizer_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let inter = dir.path().join("broker.properties");
    std::fs::write(&inter, "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=broker\nsasl.password=broker-secret\n")?;
    let inter = inter.display().to_string();
    let sets = [
        ("inter.broker.listener.name", "SASL_PLAINTEXT"),
        ("inter.broker.client.config", inter.as_str()),
        ("authorizer.enabled", "true"),
        ("super.users", "User:broker;User:ANONYMOUS"),
        ("default.replication.factor", "3"),
        ("offsets.topic.replication.factor", "1"),
    ];
    let cluster = samsa_tests::SamsaCluster::start_with_listeners(3, &sets, "SASL_PLAINTEXT://127.0.0.1:0")?;
    run_samsa(&["user", "add", "broker", "--mechanism", "SCRAM-SHA-256", "--password", "broker-secret", "--bootstrap", &cluster.addr(1)], Duration::from_secs(30))?.ok()?;
    run_samsa(&["topic", "create", "replicated", "--partitions", "1", "--replication-factor", "3", "--bootstrap", &cluster.addr(1)], Duration::from_secs(30))?.ok()?;
    let r = confluent(&cluster.bootstrap(), "replicated", 20, &["acks=all".to_string()])?;
    ensure!(r.get("consumed").map(String::as_str) == Some("20"), "{r:?}");
    // Every follower fetched the records, over SASL as User:broker.
    wait_until(Duration::from_secs(30), "three in-sync replicas", || Ok(cluster.partitions("replicated")?.first().is_some_and(|p| p.2.len() == 3)))?;
    let leader = cluster.partitions("replicated")?[0].0 as usize;
    let leader_log = cluster.stderr(leader);
    ensure!(leader_log.matches("listener=SASL_PLAINTEXT principal=User:broker").count() >= 2, "node {leader} did not see both followers over SASL:\n{leader_log}");
    // Their copies hold the records: each follower's log end is the leader's.
    for id in 1..=3 {
        let dir = cluster.data_dir(id).join("replicated-0");
        let bytes: u64 =
            std::fs::read_dir(&dir)?.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "log")).map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).sum();
        ensure!(bytes > 0, "node {id} has no records in {}", dir.display());
    }
    Ok(())
}

#[test]
fn controllers_talk_over_mutual_tls_and_a_peer_without_it_gets_nothing() -> Result<()> {
    let certs = tempfile::tempdir()?;
    let dir = certs.path();
    pki(dir)?;
    // One certificate per cluster here, good for both ends of a connection.
    std::fs::write(dir.join("node.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")?;
    let mut args = vec!["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    args.extend(["-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=samsa-node"]);
    openssl(dir, &args)?;
    openssl(dir, &["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "node.pem", "-days", "2", "-extfile", "node.ext"])?;
    let (cert, key, ca) = (path(dir, "node.pem"), path(dir, "node.key"), path(dir, "ca.pem"));
    let sets = [("controller.ssl.enabled", "true"), ("ssl.certificate.location", cert.as_str()), ("ssl.key.location", key.as_str()), ("ssl.ca.location", ca.as_str())];
    // The quorum forms and serves metadata writes only if the nodes reach each other.
    let cluster = samsa_tests::SamsaCluster::start(3, &sets)?;
    run_samsa(&["topic", "create", "over-mtls", "--partitions", "3", "--replication-factor", "3", "--bootstrap", &cluster.addr(1)], Duration::from_secs(30))?.ok()?;
    wait_until(Duration::from_secs(30), "three replicas of each partition", || Ok(cluster.partitions("over-mtls")?.iter().all(|p| p.2.len() == 3)))?;
    // A plain-TCP peer sending a controller frame (a JSON heartbeat) gets no answer.
    let body = br#"{"Heartbeat":{"id":9,"host":"127.0.0.1","port":1,"shutting_down":false}}"#;
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    let (answer, closed) = exchange(&cluster.controller_addr(1), &frame)?;
    // (At most a TLS alert comes back, never a controller answer.)
    ensure!(closed && answer.len() < 16 && !String::from_utf8_lossy(&answer).contains("Heartbeat"), "a plain peer got {answer:?} from the controller port (closed: {closed})");
    wait_until(Duration::from_secs(10), "a log line for the refused peer", || Ok(cluster.stderr(1).contains("controller TLS handshake failed")))?;
    Ok(())
}
