//! The security mails several areas send: plain notices, code-carrying notices, "new
//! sign-in with your second factor", "first second factor added", and the new-device mail.
//! Every mail still goes through `Composer::compose` (anti-phishing code, freeze link).

use super::{Client, Clocked};
use crate::clock::{format_utc, SharedClock};
use crate::domain::mail_kind::MailKind;
use crate::domain::sign_in::SecondFactor;
use crate::geo::Location;
use crate::mail::Composer;
use crate::store::{Account, NewMail};

/// Builds the shared security mails (they are queued by the caller's store write).
pub struct Notices {
    pub(crate) clock: SharedClock,
    pub(crate) composer: Composer,
}

impl Clocked for Notices {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl Notices {
    pub fn notice(&self, account: &Account, subject: &str, body: &str) -> crate::store::NewMail {
        self.composer.compose(
            Some(&account.id),
            &account.email,
            account.anti_phishing_code.as_deref(),
            subject,
            body,
            self.now(),
        )
    }

    /// A notice of `account` to another address (an email change's old or new one).
    pub fn notice_to(
        &self,
        account: &Account,
        to: &str,
        subject: &str,
        body: &str,
    ) -> crate::store::NewMail {
        self.composer.compose(
            Some(&account.id),
            to,
            account.anti_phishing_code.as_deref(),
            subject,
            body,
            self.now(),
        )
    }

    /// A mail that carries a code: mail only, never the inbox.
    pub fn code_notice(
        &self,
        account: &Account,
        subject: &str,
        body: &str,
    ) -> crate::store::NewMail {
        self.notice(account, subject, body).carrying_code()
    }

    pub fn factor_used_mail(
        &self,
        account: &Account,
        method: SecondFactor,
        client: &Client,
    ) -> crate::store::NewMail {
        let what = match method {
            SecondFactor::Totp => "your authenticator app",
            SecondFactor::BackupCode => {
                "a backup code (each works once; make new ones if you are running low)"
            }
            SecondFactor::Passkey => "your passkey",
        };
        self.composer.compose(
            Some(&account.id),
            &account.email,
            account.anti_phishing_code.as_deref(),
            "New sign-in to your account",
            &format!(
                "Your account was signed in at {} with {what}, from {} ({}, {}).\n\n\
                 If this was not you, freeze your account from the Security Center and change your password.",
                format_utc(self.now()),
                client.device.summary(),
                client.ip,
                crate::geo::Location::label(client.location.city.as_deref(), client.location.country.as_deref()),
            ),
            self.now(),
        )
        .optional(MailKind::Signin)
    }

    /// The mail announcing an account's first second factor: from then on it guards every
    /// sign-in, so a thief who plants one locks the owner out. The freeze link the composer
    /// adds works without signing in.
    pub fn first_factor_mail(
        &self,
        account: &Account,
        what: &str,
        client: &Client,
    ) -> crate::store::NewMail {
        self.notice(
            account,
            "A second factor was added to your account",
            &format!(
                "A second factor ({what}) was added to your account at {} from {} ({}, {}). From now on, signing in needs it.\n\n\
                 If this was not you, someone is in your account and could lock you out: freeze it now with the link below.",
                format_utc(self.now()),
                client.device.summary(),
                client.ip,
                crate::geo::Location::label(client.location.city.as_deref(), client.location.country.as_deref()),
            ),
        )
    }

    /// "Your account was signed in from CITY on DEVICE", with the confirmation link when
    /// the device must be confirmed.
    pub fn new_device_mail(
        &self,
        account: &Account,
        client: &Client,
        confirm_token: Option<&str>,
    ) -> NewMail {
        let place = Location::label(
            client.location.city.as_deref(),
            client.location.country.as_deref(),
        );
        let url = self.composer.public_url.trim_end_matches('/');
        let confirm = confirm_token.map_or_else(String::new, |t| {
            format!(
                "\n\nThis device is new, so its session works only after you confirm it was you:\n{url}/confirm-device/{t}\n\
                 If it was not you, do not click that link: freeze your account with the link below.",
            )
        });
        let mail = self.composer.compose(
            Some(&account.id),
            &account.email,
            account.anti_phishing_code.as_deref(),
            &format!(
                "Your account was signed in from {place} on {}",
                client.device.model
            ),
            &format!(
                "Your account was signed in at {} from a device it had not seen before:\n\n\
                 Device: {}\nOS: {}\nBrowser: {}\nIP address: {}\nLocation: {place}{confirm}",
                format_utc(self.now()),
                client.device.model,
                client.device.os,
                client.device.browser,
                client.ip,
            ),
            self.now(),
        );
        // The confirmation link is a key to the session: mail only, never the inbox.
        if confirm_token.is_some() {
            mail.carrying_code()
        } else {
            mail
        }
    }
}
