//! The brain interface: on each turn an agent's brain reads a [`View`] (what the market shows this
//! agent, plus its own private profile) and returns [`Action`]s. Rule brains and LLM brains both
//! implement [`Brain`]; the runtime executes the actions through the market contract, so a brain
//! can never do what the server would refuse. A brain that works by calling tools (an LLM) gets a
//! [`ToolBox`] for its turn: the runtime runs each call through the same contract.

use crate::profile::Profile;
use haggle_api::haggle_core::{Deal, Event, Listing};
use haggle_api::{Balance, ListingView, ThreadView};
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which side of a negotiation the agent is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Buyer,
    Seller,
}

/// One of the agent's open negotiations, with what it is about in its own profile's terms.
#[derive(Debug, Clone)]
pub struct ThreadState {
    pub thread: ThreadView,
    pub listing: Listing,
    pub role: Role,
    /// The agent's item (`SellItem::item_id`) when selling, or want (`Want::want_id`) when buying.
    pub subject: Option<String>,
    /// Turns this agent has spent on the thread so far (for patience).
    pub turns: u32,
    /// When buying: the seller's record as the market shows it now (absent when selling, or
    /// when the run hides reputation).
    pub seller_record: Option<haggle_api::haggle_core::lifecycle::Reputation>,
}

/// A listing that matches one of the agent's unmet wants.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub want_id: String,
    pub listing: ListingView,
}

/// What the agent sees on its turn.
#[derive(Debug, Clone)]
pub struct View {
    /// The market clock (ms) and the scheduler's round.
    pub now: i64,
    pub round: u64,
    pub me: i64,
    pub balance: Balance,
    /// The agent's own listings (all states), each with the profile item or want it stands for
    /// (from the listing's `item_id` / `want_id` attribute).
    pub my_listings: Vec<Listing>,
    /// Items of the profile not listed yet.
    pub unlisted: Vec<String>,
    /// Wants not yet met (bought fewer than `quantity`).
    pub unmet_wants: Vec<String>,
    /// Open threads the agent is party to.
    pub threads: Vec<ThreadState>,
    /// The agent's deals (all states).
    pub deals: Vec<Deal>,
    /// Active listings matching unmet wants, not the agent's own, without an open thread yet.
    pub candidates: Vec<Candidate>,
    /// Active wanted ads (side `buy`) of others matching the agent's unsold items, without an
    /// open thread yet: `Candidate::want_id` holds the agent's `item_id` here.
    pub buyer_leads: Vec<Candidate>,
    /// Events visible to the agent since its last turn.
    pub new_events: Vec<Event>,
}

/// What a brain can ask the runtime to do. Prices are integer minor units.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// List a profile item for sale at `price`.
    ListItem {
        item_id: String,
        price: i64,
    },
    /// Post a wanted ad for a want at `price` (what the agent offers to pay).
    PostWanted {
        want_id: String,
        price: i64,
    },
    WithdrawListing {
        listing_id: i64,
    },
    /// Open a thread on a listing, optionally with a message and an opening offer.
    OpenThread {
        listing_id: i64,
        message: Option<String>,
        price: Option<i64>,
    },
    Message {
        thread_id: i64,
        body: String,
    },
    Offer {
        thread_id: i64,
        price: i64,
    },
    Accept {
        offer_id: i64,
    },
    Reject {
        offer_id: i64,
    },
    WithdrawOffer {
        offer_id: i64,
    },
    WalkAway {
        thread_id: i64,
    },
    HandOver {
        deal_id: i64,
        note: Option<String>,
    },
    /// The seller of a shipped deal records how it was sent.
    Ship {
        deal_id: i64,
        carrier: String,
        tracking: String,
    },
    ConfirmReceipt {
        deal_id: i64,
    },
    CancelDeal {
        deal_id: i64,
    },
    Dispute {
        deal_id: i64,
        reason: String,
        /// `not_as_described` names the claims the deal's inspection found contradicted.
        grounds: haggle_api::haggle_core::DisputeGrounds,
        claims: Vec<String>,
    },
    Rate {
        deal_id: i64,
        score: u8,
        comment: String,
    },
}

/// The market's tools during one turn (the shared catalogue of [`crate::tools`]), run by the
/// runtime as the agent's participant. Refusals come back as the market's error code and message.
pub trait ToolBox: Send {
    fn call<'a>(
        &'a mut self,
        name: &'a str,
        args: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, crate::tools::ToolError>>;
    /// The brain will wait (for its model) before its next call: other turns of the market may
    /// use the market meanwhile. The next `call` takes the market again.
    fn release_market(&mut self) {}
}

/// A decision-maker behind an agent.
pub trait Brain: Send {
    /// The brain's config name, e.g. `rule:boulware`.
    fn name(&self) -> String;
    /// Decides this turn's actions.
    fn decide<'a>(&'a mut self, profile: &'a Profile, view: &'a View)
    -> BoxFuture<'a, Vec<Action>>;
    /// The turn as the runtime runs it: with the market's tools at hand. Brains that only
    /// return actions (rule brains) keep this default.
    fn turn<'a>(
        &'a mut self,
        profile: &'a Profile,
        view: &'a View,
        tools: &'a mut dyn ToolBox,
    ) -> BoxFuture<'a, Vec<Action>> {
        let _ = tools;
        self.decide(profile, view)
    }
    /// Model calls, tokens, cost and malformed turns so far (LLM brains only).
    fn llm_stats(&self) -> Option<crate::llm_brain::LlmStats> {
        None
    }
    /// Whether the brain's turns wait on something outside the market (a model), so the
    /// scheduler may run them concurrently. Rule brains decide at once and keep the sequential
    /// order.
    fn concurrent(&self) -> bool {
        false
    }
    /// The market's session ended (repeated markets): what the brain keeps for the next one.
    /// `outcome` says how the session went for the agent. LLM brains ask their model for a note
    /// (bounded, logged, replayable); rule brains keep nothing.
    fn end_session<'a>(
        &'a mut self,
        profile: &'a Profile,
        session: u32,
        outcome: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        let _ = (profile, session, outcome);
        Box::pin(async { None })
    }
    /// A brain driven from outside the process (a script or a person, through the market's API,
    /// issue 24) runs its whole turn itself: the runtime neither reads the market for it nor
    /// tidies up after it. Returns the commands the market applied in the turn. Other brains
    /// keep the runtime's read-decide-act turn (`None`).
    fn outside_turn(&mut self, round: u64) -> Option<BoxFuture<'_, u64>> {
        let _ = round;
        None
    }
    /// The next session starts (with a new profile: its items and wants): the note the brain
    /// wrote at the end of the last one, if any.
    fn start_session(&mut self, session: u32, memory: Option<&str>) {
        let _ = (session, memory);
    }
}
