//! How a session was opened. Stored as text in `sessions.method` and `logins.method`
//! (`password`, `password+totp`, `password+backup_code`, `password+passkey`, `passkey`);
//! the same strings are the wire format. Whether it proved a second factor decides if the
//! new session starts stepped up.

use super::Unknown;

/// A second factor that completed a sign-in or a step-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    Totp,
    BackupCode,
    Passkey,
}

impl SecondFactor {
    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactor::Totp => "totp",
            SecondFactor::BackupCode => "backup_code",
            SecondFactor::Passkey => "passkey",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    /// The password alone (an account without a second factor).
    Password,
    /// The password, then a second factor.
    PasswordAnd(SecondFactor),
    /// A passkey alone (it is both factors).
    Passkey,
}

impl SignInMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::PasswordAnd(SecondFactor::Totp) => "password+totp",
            SignInMethod::PasswordAnd(SecondFactor::BackupCode) => "password+backup_code",
            SignInMethod::PasswordAnd(SecondFactor::Passkey) => "password+passkey",
            SignInMethod::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Unknown> {
        match s {
            "password" => Ok(SignInMethod::Password),
            "password+totp" => Ok(SignInMethod::PasswordAnd(SecondFactor::Totp)),
            "password+backup_code" => Ok(SignInMethod::PasswordAnd(SecondFactor::BackupCode)),
            "password+passkey" => Ok(SignInMethod::PasswordAnd(SecondFactor::Passkey)),
            "passkey" => Ok(SignInMethod::Passkey),
            other => Err(Unknown::new("sign-in method", other)),
        }
    }

    /// A session opened this way starts stepped up.
    pub fn proves_second_factor(self) -> bool {
        match self {
            SignInMethod::Password => false,
            SignInMethod::PasswordAnd(_) | SignInMethod::Passkey => true,
        }
    }
}

impl TryFrom<String> for SignInMethod {
    type Error = Unknown;
    fn try_from(s: String) -> Result<Self, Unknown> {
        Self::parse(&s)
    }
}

impl serde::Serialize for SignInMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A sign-in attempt's outcome, in words.
pub fn login_result(reason: &str, method: SignInMethod) -> String {
    match reason {
        "signed_in" => format!("Success · {}", method_label(method)),
        "wrong_password" => "Failed: wrong password".to_owned(),
        "email_not_confirmed" => "Failed: email not confirmed".to_owned(),
        "throttled" => "Refused: too many attempts".to_owned(),
        "wrong_second_factor" => "Failed: wrong second-factor code".to_owned(),
        other => format!("Failed: {other}"),
    }
}

/// How a sign-in was made, in words.
pub fn method_label(method: SignInMethod) -> &'static str {
    match method {
        SignInMethod::Password => "Password",
        SignInMethod::PasswordAnd(SecondFactor::Totp) => "Password + authenticator app",
        SignInMethod::PasswordAnd(SecondFactor::BackupCode) => "Password + backup code",
        SignInMethod::PasswordAnd(SecondFactor::Passkey) => "Password + passkey",
        SignInMethod::Passkey => "Passkey",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_round_trip_and_only_the_password_alone_is_not_a_second_factor() {
        let all = [
            SignInMethod::Password,
            SignInMethod::PasswordAnd(SecondFactor::Totp),
            SignInMethod::PasswordAnd(SecondFactor::BackupCode),
            SignInMethod::PasswordAnd(SecondFactor::Passkey),
            SignInMethod::Passkey,
        ];
        for m in all {
            assert_eq!(SignInMethod::parse(m.as_str()), Ok(m));
            assert_eq!(m.proves_second_factor(), m != SignInMethod::Password);
        }
        assert!(SignInMethod::parse("password+sms").is_err());
    }
}
