//! Who may use the bot (pure decisions, unit-tested): the owner, administrators, members with
//! Manage Server, members with an allowed role and allowed users; the `no-kimaki` role blocks
//! everyone, the owner included; other bots only when allowlisted. `!command` is a separate
//! capability on top.

use super::config::{AccessConfig, BLOCKED_ROLE};

/// ADMINISTRATOR.
pub const PERM_ADMINISTRATOR: u64 = 1 << 3;
/// MANAGE_GUILD ("Manage Server").
pub const PERM_MANAGE_GUILD: u64 = 1 << 5;

/// The facts about one author that the decision needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub user_id: u64,
    pub is_bot: bool,
    pub is_owner: bool,
    /// Names of the member's roles.
    pub role_names: Vec<String>,
    /// Guild-level permissions (the union of the member's roles and `@everyone`).
    pub permissions: u64,
}

impl Subject {
    fn has_role(&self, names: &[String]) -> bool {
        self.role_names
            .iter()
            .any(|r| names.iter().any(|n| n.eq_ignore_ascii_case(r)))
    }

    fn is_admin(&self) -> bool {
        self.is_owner
            || self.permissions & PERM_ADMINISTRATOR != 0
            || self.permissions & PERM_MANAGE_GUILD != 0
    }
}

/// The outcome for one author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Has the `no-kimaki` role.
    Blocked,
    /// A person without the rights: told once how to get them.
    Refused,
    /// A bot that is not allowlisted: ignored silently (avoids bot loops).
    IgnoredBot,
}

/// Decides whether `who` may use the bot.
pub fn decide(policy: &AccessConfig, who: &Subject) -> Access {
    if who.is_bot {
        return if policy.allowed_bots.contains(&who.user_id) {
            Access::Allowed
        } else {
            Access::IgnoredBot
        };
    }
    if who.has_role(&[BLOCKED_ROLE.to_owned()]) {
        return Access::Blocked;
    }
    if who.is_admin()
        || policy.allowed_users.contains(&who.user_id)
        || who.has_role(&policy.allowed_roles)
    {
        Access::Allowed
    } else {
        Access::Refused
    }
}

/// Whether `who` may run `!command` (after `decide` allowed them).
pub fn may_run_shell(policy: &AccessConfig, who: &Subject) -> bool {
    !who.is_bot && (who.is_admin() || who.has_role(&policy.shell_roles))
}

/// What a refused or blocked author is told (at most once per channel per cooldown).
pub fn refusal_text(access: Access, role: &str) -> Option<String> {
    match access {
        Access::Blocked => Some(format!(
            "You have the **{BLOCKED_ROLE}** role which blocks bot access. Remove it to use the bot."
        )),
        Access::Refused => Some(format!(
            "You don't have permission to use this bot: ask a server admin to give you the **{role}** role."
        )),
        Access::Allowed | Access::IgnoredBot => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessConfig {
        AccessConfig {
            allowed_users: vec![7],
            allowed_roles: vec!["Kimaki".into()],
            allowed_bots: vec![99],
            shell_roles: vec!["shell".into()],
        }
    }

    fn person(id: u64) -> Subject {
        Subject {
            user_id: id,
            ..Subject::default()
        }
    }

    #[test]
    fn owner_admin_manage_server_role_and_listed_users_are_allowed() {
        let p = policy();
        let owner = Subject {
            is_owner: true,
            ..person(1)
        };
        let admin = Subject {
            permissions: PERM_ADMINISTRATOR,
            ..person(2)
        };
        let manager = Subject {
            permissions: PERM_MANAGE_GUILD,
            ..person(3)
        };
        let role = Subject {
            role_names: vec!["kimaki".into()],
            ..person(4)
        };
        for s in [owner, admin, manager, role, person(7)] {
            assert_eq!(decide(&p, &s), Access::Allowed, "{s:?}");
        }
        assert_eq!(decide(&p, &person(5)), Access::Refused);
    }

    #[test]
    fn no_kimaki_blocks_even_the_owner() {
        let owner = Subject {
            is_owner: true,
            role_names: vec!["No-Kimaki".into(), "Kimaki".into()],
            ..person(1)
        };
        assert_eq!(decide(&policy(), &owner), Access::Blocked);
        assert!(refusal_text(Access::Blocked, "Kimaki")
            .unwrap()
            .contains("**no-kimaki**"));
    }

    #[test]
    fn bots_need_the_allowlist_not_a_role() {
        let p = policy();
        let bot_with_role = Subject {
            is_bot: true,
            role_names: vec!["Kimaki".into()],
            ..person(50)
        };
        assert_eq!(decide(&p, &bot_with_role), Access::IgnoredBot);
        let listed = Subject {
            is_bot: true,
            ..person(99)
        };
        assert_eq!(decide(&p, &listed), Access::Allowed);
        assert!(!may_run_shell(&p, &listed));
    }

    #[test]
    fn the_shell_is_a_separate_capability() {
        let p = policy();
        let kimaki_role = Subject {
            role_names: vec!["Kimaki".into()],
            ..person(4)
        };
        assert_eq!(decide(&p, &kimaki_role), Access::Allowed);
        assert!(!may_run_shell(&p, &kimaki_role));
        let shell = Subject {
            role_names: vec!["Kimaki".into(), "Shell".into()],
            ..person(4)
        };
        assert!(may_run_shell(&p, &shell));
        let owner = Subject {
            is_owner: true,
            ..person(1)
        };
        assert!(may_run_shell(&p, &owner));
    }
}
