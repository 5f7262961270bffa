//! Outgoing mail. [`Composer`] writes every security mail the same way: the account's
//! anti-phishing code first (or a hint to set one), the message, and a footer that says
//! what Rampart never asks for. [`Transport`] delivers a queued mail through SMTP (lettre)
//! or, when no SMTP server is configured, into the local mailbox page `/dev/mailbox`.

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::clock::{Millis, DAY};
use crate::store::{FreezeLink, NewMail, OutboxMail};

/// How long the freeze link in a mail works.
pub const FREEZE_LINK_TTL: Millis = 7 * DAY;

#[derive(Debug, Clone)]
pub struct Composer {
    pub public_url: String,
}

impl Composer {
    /// A mail to `to`, queued at `now`, carrying `anti_phishing` when the owner set one.
    pub fn compose(
        &self,
        account_id: Option<&str>,
        to: &str,
        anti_phishing: Option<&str>,
        subject: &str,
        body: &str,
        now: Millis,
    ) -> NewMail {
        let banner = match anti_phishing {
            Some(code) => format!("Anti-phishing code: {code}\n(Only genuine Rampart mail shows your code. No code, or a different one: do not click anything.)"),
            None => "Tip: set an anti-phishing code in your Security Center. Every genuine mail from us will then show it, so a fake one stands out.".to_owned(),
        };
        let url = self.public_url.trim_end_matches('/');
        // Every mail about an account carries its own single-use freeze link, which works
        // without signing in (even after an attacker changed the password).
        let freeze_link = account_id.map(|account| {
            let token = crate::domain::secret::random_token();
            let link = FreezeLink {
                token_hash: crate::domain::secret::token_hash(&token),
                account_id: account.to_owned(),
                expires_at: now + FREEZE_LINK_TTL,
            };
            (token, link)
        });
        let freeze = freeze_link.as_ref().map_or_else(String::new, |(token, _)| {
            format!("Not you? Freeze your account now, no sign-in needed (works once, for 7 days):\n{url}/freeze/{token}\n\n")
        });
        let body_text = format!(
            "{banner}\n\n{body}\n\n{freeze}--\nRampart Security Center: {url}/security\n\
             We will never ask for your password, your codes or your recovery phrase, by mail, phone or chat.\n"
        );
        NewMail {
            // Time-ordered, so mails queued in the same millisecond keep their order.
            id: uuid::Uuid::now_v7().to_string(),
            account_id: account_id.map(str::to_owned),
            to: to.to_owned(),
            subject: format!("[Rampart] {subject}"),
            body_text,
            event_text: body.to_owned(),
            created_at: now,
            freeze_link: freeze_link.map(|(_, link)| link),
            inbox: account_id.is_some(),
            kind: crate::domain::mail_kind::MailKind::Security,
        }
    }
}

impl Composer {
    /// A mail that carries a code (confirmation): mail only, never the inbox.
    pub fn compose_code_mail(
        &self,
        account_id: Option<&str>,
        to: &str,
        anti_phishing: Option<&str>,
        subject: &str,
        body: &str,
        now: Millis,
    ) -> NewMail {
        self.compose(account_id, to, anti_phishing, subject, body, now)
            .carrying_code()
    }
}

/// Where queued mail goes.
#[derive(Clone)]
pub enum Transport {
    Smtp {
        relay: AsyncSmtpTransport<Tokio1Executor>,
        from: String,
    },
    /// Kept in the outbox and shown on `/dev/mailbox`.
    LocalMailbox,
}

impl Transport {
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`
    /// (TLS from the start), or plain `smtp://host:25` for a relay on the same host. The
    /// local mailbox only when asked for (`dev_mailbox`): it shows everyone's codes to
    /// anyone, so its absence must never switch it on.
    pub fn from_settings(
        smtp_url: Option<&str>,
        from: &str,
        dev_mailbox: bool,
    ) -> anyhow::Result<Self> {
        match smtp_url {
            _ if dev_mailbox => Ok(Self::LocalMailbox),
            None => anyhow::bail!(
                "no way to send mail: set smtp_url (RAMPART_SMTP_URL=smtps://user:pass@mail.example:465, \
                 or smtp://user:pass@host:587?tls=required), or, to try Rampart on this machine only, \
                 start with --dev-mailbox (RAMPART_DEV_MAILBOX=true), which shows every mail at /dev/mailbox"
            ),
            Some(url) => {
                from.parse::<lettre::message::Mailbox>()
                    .map_err(|e| anyhow::anyhow!("invalid mail_from {from:?}: {e}"))?;
                let relay = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("invalid SMTP URL: {e}"))?
                    .timeout(Some(std::time::Duration::from_secs(20)))
                    .build();
                Ok(Self::Smtp {
                    relay,
                    from: from.to_owned(),
                })
            }
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Self::LocalMailbox)
    }

    /// Sends one mail. Its Message-ID is derived from the outbox id, so if a crash makes
    /// the worker send a mail twice, mail systems can recognise the duplicate.
    pub async fn deliver(&self, mail: &OutboxMail) -> anyhow::Result<()> {
        match self {
            Self::LocalMailbox => Ok(()),
            Self::Smtp { relay, from } => {
                let message = Message::builder()
                    .from(from.parse()?)
                    .to(mail.to_addr.parse()?)
                    .subject(&mail.subject)
                    .message_id(Some(format!("<{}@rampart>", mail.id)))
                    .header(ContentType::TEXT_PLAIN)
                    .body(mail.body_text.clone())?;
                relay.send(message).await?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mail_carries_the_code_or_the_hint() {
        let c = Composer {
            public_url: "https://sec.example/".into(),
        };
        let with = c.compose(None, "a@example.com", Some("Blue-Falcon7"), "Hi", "Body", 0);
        assert!(with
            .body_text
            .starts_with("Anti-phishing code: Blue-Falcon7"));
        assert!(with.body_text.contains("https://sec.example/security"));
        let without = c.compose(None, "a@example.com", None, "Hi", "Body", 0);
        assert!(without.body_text.contains("set an anti-phishing code"));
        assert_eq!(without.subject, "[Rampart] Hi");
    }
}
