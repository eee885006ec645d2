//! Properties of the normalisation rules over arbitrary input: never a panic, and what a
//! store keeps normalises to itself (so a stored name always finds its account again).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::unused_async,
    clippy::items_after_statements
)]

use proptest::prelude::*;
use umanage_account::{AccountError, Email, Login, Role, Username};

/// Strings mixing ASCII, Latin/Greek/Cyrillic, compatibility forms, combining marks,
/// invisible characters and the separators the rules care about.
fn tricky() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a", "Z", "0", "9", ".", "_", "-", "@", " ", "\t", "\0", "é", "e\u{301}", "İ", "ß", "ẞ",
        "Σ", "ς", "д", "Ａ", "ﬁ", "ᴬ", "Ⅻ", "½", "\u{200B}", "\u{202E}", "\u{FEFF}", "😀", "山",
        "ש", "'", ";", "%", "+", "xn--", "\u{0307}", "ǅ", "ﬀ", "ŉ", "Ω", "K",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn usernames_are_idempotent(input in prop_oneof![tricky(), any::<String>()]) {
        if let Ok(name) = Username::parse(&input) {
            let again = Username::parse(name.as_str()).unwrap();
            prop_assert_eq!(again, name.clone());
            prop_assert!(!name.as_str().contains('@'));
            prop_assert!((3..=64).contains(&name.as_str().chars().count()));
        } else {
            let invalid = matches!(
                Username::parse(&input),
                Err(AccountError::InvalidUsername { .. })
            );
            prop_assert!(invalid);
        }
    }

    #[test]
    fn emails_are_idempotent(
        local in prop_oneof![tricky(), "[A-Za-z0-9.+_-]{1,20}"],
        domain in prop_oneof![tricky(), "[A-Za-z0-9-]{1,10}\\.[A-Za-z]{2,5}"],
    ) {
        let input = format!("{local}@{domain}");
        match Email::parse(&input) {
            Ok(email) => {
                let again = Email::parse(email.as_str()).unwrap();
                prop_assert_eq!(again.as_str(), email.as_str());
                prop_assert_eq!(again.key(), email.key());
                prop_assert_eq!(email.local_part(), local.trim_start());
                prop_assert!(email.as_str().len() <= Email::MAX_BYTES);
                prop_assert_eq!(email.key(), email.key().to_lowercase());
            }
            Err(err) => {
                let invalid = matches!(err, AccountError::InvalidEmail { .. });
                prop_assert!(invalid, "{:?}", err);
            }
        }
    }

    #[test]
    fn nothing_panics(input in any::<String>()) {
        let _ = Username::parse(&input);
        let _ = Email::parse(&input);
        let _ = Login::parse(&input);
        let _ = Role::new(&input);
        let _ = input.parse::<umanage_account::AccountCursor>();
    }
}

#[test]
fn case_variants_share_one_key() {
    let variants = ["Bob@Example.COM", "bob@example.com", "BOB@EXAMPLE.COM"];
    let keys: Vec<String> = variants
        .iter()
        .map(|v| Email::parse(v).unwrap().key().to_owned())
        .collect();
    assert!(keys.iter().all(|k| k == "bob@example.com"), "{keys:?}");
    assert_eq!(
        Email::parse(variants[0]).unwrap().as_str(),
        "Bob@example.com"
    );
}
