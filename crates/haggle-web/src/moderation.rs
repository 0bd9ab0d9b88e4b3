//! The operator's policy and moderation page (under Operate): the market policy as a form, the
//! moderation queue with each hold's reason (approve or remove), removing an active listing, and
//! suspending or reinstating participants. Each action is the service's own command with the
//! form's idempotency key; the rules are the core's.

use crate::Web;
use crate::format::{money, money_input, parse_money, time};
use crate::page::{Form, Ids, Nav, PageResult, bad_request, ctx, render};
use crate::session::{FormOrigin, Signed, idem_key, new_form_key, operator_of};
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use haggle_core::policy::{MarketPolicy, PolicyAction, PriceBounds};
use serde::{Deserialize, Serialize};

pub struct HeldLine {
    pub id: i64,
    pub title: String,
    pub owner: String,
    pub price: String,
    pub reason: String,
    pub held: String,
    pub approve_key: String,
    pub remove_key: String,
}

pub struct MemberLine {
    pub id: i64,
    pub name: String,
    /// The suspension's reason and time, when suspended.
    pub suspended: Option<String>,
    pub key: String,
}

/// A rule's action select: (rule field, label, hold selected).
pub struct ActionLine {
    pub field: &'static str,
    pub label: &'static str,
    pub hold: bool,
}

#[derive(Template)]
#[template(path = "moderation.html")]
struct ModerationPage {
    nav: Nav,
    market_id: i64,
    csrf: String,
    categories: String,
    terms: String,
    bounds: String,
    per_day: String,
    per_hour: String,
    actions: Vec<ActionLine>,
    policy_key: String,
    held: Vec<HeldLine>,
    more_held: bool,
    members: Vec<MemberLine>,
    more_members: bool,
    remove_key: String,
}

pub async fn page(State(web): State<Web>, s: Signed, Ids(m): Ids<i64>) -> PageResult {
    operator_of(&s, m)?;
    let c = ctx(&web.svc, &s, m, "Policy and moderation", "operate").await?;
    let cur = c.market.currency.clone();
    let p = &c.market.rules.policy;
    let queue = web.svc.held_listings(&s.caller, m, None, Some(100)).await?;
    let list = web.svc.participants(&s.caller, m, None, Some(200)).await?;
    let name_of = |id: i64| {
        list.items
            .iter()
            .find(|x| x.id == id)
            .map_or_else(|| format!("participant {id}"), |x| x.name.clone())
    };
    let held = queue
        .items
        .iter()
        .map(|h| HeldLine {
            id: h.listing.id,
            title: h.listing.title.clone(),
            owner: name_of(h.listing.owner),
            price: money(h.listing.price, &cur),
            reason: h.reason.clone(),
            held: time(h.held_at),
            approve_key: new_form_key(),
            remove_key: new_form_key(),
        })
        .collect();
    let members = list
        .items
        .iter()
        .map(|x| MemberLine {
            id: x.id,
            name: x.name.clone(),
            suspended: x
                .suspension
                .as_ref()
                .map(|s| format!("{} (since {})", s.reason, time(s.at))),
            key: new_form_key(),
        })
        .collect();
    let a = &p.actions;
    let actions = vec![
        ActionLine {
            field: "prohibited_categories",
            label: "Prohibited category",
            hold: a.prohibited_categories == PolicyAction::Hold,
        },
        ActionLine {
            field: "prohibited_terms",
            label: "Prohibited term",
            hold: a.prohibited_terms == PolicyAction::Hold,
        },
        ActionLine {
            field: "price_bounds",
            label: "Price outside bounds",
            hold: a.price_bounds == PolicyAction::Hold,
        },
        ActionLine {
            field: "max_listings_per_day",
            label: "Over the daily listing limit",
            hold: a.max_listings_per_day == PolicyAction::Hold,
        },
    ];
    let bound = |v: Option<i64>| v.map_or("-".to_string(), |v| money_input(v, &cur));
    Ok(render(&ModerationPage {
        nav: c.nav,
        market_id: m,
        csrf: s.csrf.clone(),
        categories: p.prohibited_categories.join(", "),
        terms: p.prohibited_terms.join("\n"),
        bounds: p
            .price_bounds
            .iter()
            .map(|(c, b)| format!("{c} {} {}", bound(b.min), bound(b.max)))
            .collect::<Vec<_>>()
            .join("\n"),
        per_day: p
            .max_listings_per_day
            .map_or(String::new(), |n| n.to_string()),
        per_hour: p
            .max_offers_per_hour
            .map_or(String::new(), |n| n.to_string()),
        actions,
        policy_key: new_form_key(),
        more_held: queue.next_cursor.is_some(),
        held,
        more_members: list.next_cursor.is_some(),
        members,
        remove_key: new_form_key(),
    }))
}

#[derive(Deserialize, Serialize)]
pub struct PolicyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    /// Comma-separated.
    #[serde(default)]
    categories: String,
    /// One term or phrase per line.
    #[serde(default)]
    terms: String,
    /// One `category min max` per line (`-` for no bound).
    #[serde(default)]
    bounds: String,
    #[serde(default)]
    per_day: String,
    #[serde(default)]
    per_hour: String,
    #[serde(default)]
    prohibited_categories: String,
    #[serde(default)]
    prohibited_terms: String,
    #[serde(default)]
    price_bounds: String,
    #[serde(default)]
    max_listings_per_day: String,
}

fn action(v: &str) -> PolicyAction {
    if v == "hold" {
        PolicyAction::Hold
    } else {
        PolicyAction::Refuse
    }
}

fn limit(field: &str, v: &str) -> PageResult<Option<u32>> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| bad_request(format!("{field}: '{v}' is not a whole number")))
}

/// Reads the form into a policy; the core then validates it (bounds, sizes) like any other.
fn policy_of(f: &PolicyForm, currency: &str) -> PageResult<MarketPolicy> {
    let mut p = MarketPolicy {
        prohibited_categories: f
            .categories
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect(),
        prohibited_terms: f
            .terms
            .lines()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        max_listings_per_day: limit("listings per day", &f.per_day)?,
        max_offers_per_hour: limit("offers per hour", &f.per_hour)?,
        ..MarketPolicy::default()
    };
    for line in f.bounds.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [category, min, max] = parts[..] else {
            return Err(bad_request(format!(
                "price bounds: '{line}' should be `category min max` (`-` for no bound)"
            )));
        };
        let amount = |v: &str| -> PageResult<Option<i64>> {
            if v == "-" {
                return Ok(None);
            }
            parse_money(v, currency)
                .map(Some)
                .map_err(|e| bad_request(format!("price bounds of {category}: {e}")))
        };
        p.price_bounds.insert(
            category.to_string(),
            PriceBounds {
                min: amount(min)?,
                max: amount(max)?,
            },
        );
    }
    p.actions.prohibited_categories = action(&f.prohibited_categories);
    p.actions.prohibited_terms = action(&f.prohibited_terms);
    p.actions.price_bounds = action(&f.price_bounds);
    p.actions.max_listings_per_day = action(&f.max_listings_per_day);
    Ok(p)
}

/// Replaces the market policy.
pub async fn set_policy(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids(m): Ids<i64>,
    Form(f): Form<PolicyForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let market = web.svc.market(&s.caller, m).await?;
    let policy = policy_of(&f, &market.currency)?;
    let idem = idem_key(&f.idem, &format!("/m/{m}/operate/policy"), &f)?;
    web.svc
        .set_policy(&s.caller, m, policy, idem.as_ref())
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/operate/moderation#policy")).into_response())
}

#[derive(Deserialize, Serialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    #[serde(default)]
    reason: String,
    /// The listing an operator removes by id (the remove-an-active-listing form).
    #[serde(default)]
    listing: String,
}

pub async fn approve(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, l)): Ids<(i64, i64)>,
    Form(f): Form<ActForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let idem = idem_key(&f.idem, &format!("/m/{m}/operate/listings/{l}/approve"), &f)?;
    web.svc
        .approve_listing(&s.caller, m, l, idem.as_ref())
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/operate/moderation#queue")).into_response())
}

pub async fn remove(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids(m): Ids<i64>,
    Form(f): Form<ActForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let l: i64 = f
        .listing
        .trim()
        .parse()
        .map_err(|_| bad_request("listing: give the listing's id"))?;
    let idem = idem_key(&f.idem, &format!("/m/{m}/operate/remove"), &f)?;
    web.svc
        .remove_listing(&s.caller, m, l, f.reason.clone(), idem.as_ref())
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/operate/moderation#queue")).into_response())
}

pub async fn suspend(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, p)): Ids<(i64, i64)>,
    Form(f): Form<ActForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let idem = idem_key(
        &f.idem,
        &format!("/m/{m}/operate/participants/{p}/suspend"),
        &f,
    )?;
    web.svc
        .suspend(&s.caller, m, p, f.reason.clone(), idem.as_ref())
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/operate/moderation#members")).into_response())
}

pub async fn reinstate(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, p)): Ids<(i64, i64)>,
    Form(f): Form<ActForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let idem = idem_key(
        &f.idem,
        &format!("/m/{m}/operate/participants/{p}/reinstate"),
        &f,
    )?;
    web.svc.reinstate(&s.caller, m, p, idem.as_ref()).await?;
    Ok(Redirect::to(&format!("/m/{m}/operate/moderation#members")).into_response())
}
