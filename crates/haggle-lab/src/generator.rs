//! The seeded generator of a realistic office classifieds market (spec: experiments.md,
//! Scenario): colleagues selling bikes, books, kitchen gear, electronics, furniture, collectibles,
//! services, clothing, games and plants to each other.
//!
//! Ground truth: every item type has a reference price (for a $100-budget office market, $5–$90;
//! fixed, whatever the budget); an item's floor is 50–90% of the reference times its condition's
//! factor, its asking price 1.2–1.8 times the floor, both whole dollars. Each participant wants
//! 3–5 item types that others sell, valuing any item of the type at 70–140% of the reference.
//! Everything is drawn from one `StdRng` seeded with the seed, in a fixed order, so the same
//! seed and arguments give the identical [`Scenario`] (byte-identical JSON).

use crate::scenario::Scenario;
use haggle_agents::profile::{Autonomy, Profile, SellItem, Style, Want};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// One kind of thing people sell.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub item_type: &'static str,
    pub category: &'static str,
    /// Reference price in cents.
    pub reference: i64,
    /// Listing titles; one is picked per item.
    pub titles: &'static [&'static str],
    /// Description sentences; one is picked per item.
    pub details: &'static [&'static str],
    /// Words buyers search with.
    pub keywords: &'static [&'static str],
    /// Services have no condition.
    pub service: bool,
    /// Small things someone may want two of.
    pub multi: bool,
}

macro_rules! kinds {
    ($( $t:literal, $c:literal, $r:literal, [$($title:literal),+], [$($d:literal),+], [$($k:literal),+] $(, $flag:ident)* ; )+) => {
        &[$(Kind {
            item_type: $t, category: $c, reference: $r * 100,
            titles: &[$($title),+], details: &[$($d),+], keywords: &[$($k),+],
            service: kinds!(@has service $($flag)*), multi: kinds!(@has multi $($flag)*),
        }),+]
    };
    (@has $want:ident) => { false };
    (@has service service $($rest:ident)*) => { true };
    (@has multi multi $($rest:ident)*) => { true };
    (@has $want:ident $other:ident $($rest:ident)*) => { kinds!(@has $want $($rest)*) };
}

/// The catalogue: 53 item types across 15 categories.
pub const CATALOGUE: &[Kind] = kinds! {
    "road bike", "bikes", 85,
        ["Trek road bike, 56 cm frame", "Aluminium road bike, 54 cm", "Specialized Allez road bike", "Giant road bike, Shimano 105"],
        ["Commuted on it for two summers.", "New tyres last spring, shifts cleanly.", "Light enough to carry up the stairs."],
        ["road bike", "bike", "bicycle"];
    "mountain bike", "bikes", 80,
        ["Hardtail mountain bike, 27.5\"", "Cube mountain bike, size M", "Full-suspension mountain bike"],
        ["Hydraulic disc brakes.", "Ridden on weekend trails only.", "Comes with a spare inner tube."],
        ["mountain bike", "mtb", "bike"];
    "bike helmet", "bikes", 20,
        ["Bike helmet, size M", "Giro commuter helmet", "Bike helmet with rear light"],
        ["Adjustable fit, no crashes.", "Bought the wrong size.", "Vents and a removable visor."],
        ["helmet", "bike"], multi;
    "bike lock", "bikes", 12,
        ["Kryptonite U-lock", "Heavy chain bike lock", "Folding bike lock with two keys"],
        ["Both keys included.", "Kept my bike safe for years.", "Mount bracket included."],
        ["lock", "bike"], multi;
    "snowboard", "winter sports", 70,
        ["Burton snowboard, 156 cm", "All-mountain snowboard with bindings", "Freestyle snowboard, 152 cm"],
        ["Waxed before storage.", "Bindings fit boots 41–45.", "Two seasons in the Alps."],
        ["snowboard", "board", "winter"];
    "ski boots", "winter sports", 45,
        ["Salomon ski boots, 27.5", "Atomic ski boots, size 42", "Ski boots, flex 90"],
        ["Heat-moulded liners.", "Buckles all work.", "Too small for me now."],
        ["ski boots", "skiing", "boots"];
    "tennis racket", "sports", 18,
        ["Wilson tennis racket", "Head tennis racket with cover", "Babolat tennis racket, grip 2"],
        ["Freshly strung.", "Cover included.", "Good for beginners."],
        ["tennis", "racket"], multi;
    "yoga mat", "sports", 10,
        ["Thick yoga mat, purple", "Cork yoga mat", "Yoga mat with carry strap"],
        ["Non-slip surface.", "Washed and rolled.", "6 mm thick."],
        ["yoga", "mat"], multi;
    "camping tent", "outdoors", 40,
        ["Two-person camping tent", "Quechua pop-up tent", "Three-season backpacking tent"],
        ["All pegs and poles present.", "Pitches in five minutes.", "Used on three trips."],
        ["tent", "camping"];
    "running shoes", "clothing", 25,
        ["Asics running shoes, EU 42", "Nike running shoes, size 9", "Trail running shoes, EU 39"],
        ["Ran maybe 50 km in them.", "Wrong size, worn twice.", "Great grip on wet roads."],
        ["running", "shoes", "trainers"];
    "paperback novel", "books", 5,
        ["Paperback: The Remains of the Day", "Paperback crime novel bundle", "Paperback: Project Hail Mary", "Paperback: Pachinko"],
        ["Read once, spine intact.", "A great holiday read.", "No notes or underlining."],
        ["novel", "book", "paperback"], multi;
    "cookbook", "books", 8,
        ["Ottolenghi cookbook", "Cookbook: Salt Fat Acid Heat", "Vegetarian weeknight cookbook"],
        ["A few sauce splashes, all pages there.", "Tried half the recipes.", "Hardcover."],
        ["cookbook", "recipes", "book"], multi;
    "programming book", "books", 15,
        ["The Rust Programming Language (book)", "Designing Data-Intensive Applications", "Clean Code, paperback", "Python Crash Course"],
        ["Some highlighting in the first chapters.", "Current edition.", "Bought for a course, barely opened."],
        ["programming", "book", "software"], multi;
    "coffee grinder", "kitchen", 25,
        ["Burr coffee grinder", "Hand coffee grinder, ceramic burrs", "Electric coffee grinder"],
        ["15 grind settings.", "Cleaned and descaled.", "Quiet enough for the office."],
        ["coffee", "grinder"];
    "french press", "kitchen", 12,
        ["Bodum French press, 1 l", "Stainless French press", "Glass French press, 8 cups"],
        ["No chips or cracks.", "Spare filter included.", "Dishwasher safe."],
        ["french press", "coffee"];
    "cast iron pan", "kitchen", 20,
        ["Cast iron skillet, 26 cm", "Lodge cast iron pan", "Cast iron grill pan"],
        ["Well seasoned.", "Works on induction.", "Heavy, will last forever."],
        ["cast iron", "pan", "skillet"];
    "stand mixer", "kitchen", 90,
        ["KitchenAid stand mixer", "Stand mixer with three attachments", "Kenwood stand mixer, 4.3 l"],
        ["Dough hook, whisk and paddle included.", "Makes bread every weekend.", "Strong motor."],
        ["mixer", "baking", "kitchenaid"];
    "espresso machine", "kitchen", 75,
        ["De'Longhi espresso machine", "Espresso machine with milk frother", "Capsule espresso machine"],
        ["Descaled monthly.", "Makes a great flat white.", "15 bar pump."],
        ["espresso", "coffee machine", "coffee"];
    "rice cooker", "kitchen", 22,
        ["Rice cooker, 1.8 l", "Zojirushi rice cooker", "Rice cooker with steamer basket"],
        ["Non-stick bowl in good shape.", "Keep-warm function.", "Measuring cup included."],
        ["rice cooker", "rice"];
    "mechanical keyboard", "electronics", 40,
        ["Mechanical keyboard, brown switches", "Keychron K2 keyboard", "Tenkeyless mechanical keyboard"],
        ["USB-C, works with Mac and PC.", "Keycaps cleaned.", "Backlit."],
        ["keyboard", "mechanical"];
    "computer monitor", "electronics", 60,
        ["Dell 24\" monitor", "27\" 1440p monitor", "LG 24\" IPS monitor"],
        ["No dead pixels.", "HDMI and DisplayPort cables included.", "Height-adjustable stand."],
        ["monitor", "screen", "display"];
    "wireless headphones", "electronics", 45,
        ["Sony noise-cancelling headphones", "Bose wireless headphones", "Bluetooth over-ear headphones"],
        ["Battery lasts all day.", "Carry case included.", "Ear pads recently replaced."],
        ["headphones", "noise cancelling", "bluetooth"];
    "bluetooth speaker", "electronics", 25,
        ["JBL Bluetooth speaker", "Waterproof Bluetooth speaker", "Small Bluetooth speaker, red"],
        ["Loud and clear.", "Charges over USB-C.", "Survived a festival."],
        ["speaker", "bluetooth"];
    "e-reader", "electronics", 50,
        ["Kindle Paperwhite", "Kobo e-reader", "Kindle with cover"],
        ["Screen without scratches.", "Holds a charge for weeks.", "Reset to factory settings."],
        ["e-reader", "kindle", "ebook"];
    "webcam", "electronics", 18,
        ["Logitech HD webcam", "1080p webcam with microphone", "Webcam with privacy cover"],
        ["Plug and play.", "Sharp picture for calls.", "Clip fits any monitor."],
        ["webcam", "camera"];
    "desk lamp", "office", 12,
        ["LED desk lamp", "IKEA desk lamp, white", "Dimmable desk lamp with USB port"],
        ["Three brightness levels.", "Flexible arm.", "Bulb included."],
        ["lamp", "desk lamp", "light"];
    "office chair", "furniture", 55,
        ["Ergonomic office chair", "Mesh office chair", "Office chair with lumbar support"],
        ["Adjustable height and arms.", "Saves your back.", "Pick-up only, it is bulky."],
        ["chair", "office chair", "ergonomic"];
    "bookshelf", "furniture", 35,
        ["IKEA Billy bookshelf", "Solid wood bookshelf", "Small bookshelf, 4 shelves"],
        ["Disassembled for transport.", "Sturdy.", "White, fits any room."],
        ["bookshelf", "shelf", "shelves"];
    "standing desk converter", "furniture", 60,
        ["Standing desk converter", "Sit-stand desk riser", "Height-adjustable desk converter"],
        ["Fits two monitors.", "Gas spring lift.", "Changed my afternoons."],
        ["standing desk", "desk", "converter"];
    "floor lamp", "furniture", 20,
        ["Arc floor lamp", "Floor lamp with reading light", "Minimalist floor lamp"],
        ["Warm light.", "Foot switch.", "Bulb included."],
        ["floor lamp", "lamp"];
    "vinyl record", "collectibles", 12,
        ["Vinyl LP: Rumours", "Vinyl LP: Kind of Blue", "Vinyl LP: Abbey Road", "Jazz vinyl lot (3 LPs)"],
        ["Plays without skips.", "Original sleeve.", "Stored upright."],
        ["vinyl", "record", "lp"], multi;
    "trading card lot", "collectibles", 15,
        ["Pokémon card lot (50 cards)", "Magic: The Gathering commons lot", "Football sticker album, almost complete"],
        ["Kept in sleeves.", "A few holos.", "From a smoke-free home."],
        ["cards", "trading cards", "collection"], multi;
    "vintage camera", "collectibles", 45,
        ["Olympus OM-1 film camera", "Polaroid SX-70", "Canon AE-1 with 50 mm lens"],
        ["Shutter fires at all speeds.", "Display piece or working camera.", "Strap and case included."],
        ["film camera", "vintage", "camera"];
    "comic book", "collectibles", 8,
        ["Comic: Watchmen", "Asterix comic bundle", "Comic: Saga vol. 1"],
        ["Bagged and boarded.", "Read carefully once.", "First printing."],
        ["comic", "graphic novel"], multi;
    "pet-sitting", "services", 40,
        ["Weekend pet-sitting (cats or small dogs)", "Pet-sitting while you travel", "Dog walking and feeding, 3 days"],
        ["I have looked after cats for years.", "Daily photo updates.", "Within 5 km of the office."],
        ["pet sitting", "pets", "cat sitter"], service;
    "math tutoring", "services", 30,
        ["Math tutoring, one hour", "Statistics tutoring session", "High-school maths tutoring, 1 h"],
        ["Patient and practical.", "Online or at the office.", "Exam preparation welcome."],
        ["tutoring", "math", "lessons"], service, multi;
    "bike tune-up", "services", 25,
        ["Bike tune-up at your desk", "Full bike service", "Brake and gear adjustment"],
        ["I bring my own tools.", "Same-day turnaround.", "Parts at cost."],
        ["bike service", "tune-up", "repair"], service;
    "moving help", "services", 35,
        ["Moving help, 2 hours", "Help carrying furniture", "Van and a pair of hands, half a day"],
        ["Strong and punctual.", "Can disassemble IKEA furniture.", "Evenings or weekends."],
        ["moving", "help", "van"], service;
    "language lessons", "services", 25,
        ["Spanish conversation lesson", "French lessons for beginners", "German tutoring, 1 h"],
        ["Native speaker.", "Relaxed and fun.", "Lunch breaks work."],
        ["language", "lessons", "tutoring"], service, multi;
    "winter jacket", "clothing", 45,
        ["Patagonia winter jacket, M", "Down jacket, size L", "Waterproof parka, S"],
        ["Very warm.", "No tears or stains.", "Hood detachable."],
        ["jacket", "coat", "winter"];
    "wool sweater", "clothing", 20,
        ["Merino wool sweater, M", "Hand-knitted wool sweater", "Cashmere blend sweater, L"],
        ["Hand washed only.", "Cosy for the office.", "No pilling."],
        ["sweater", "wool", "jumper"], multi;
    "leather boots", "clothing", 40,
        ["Dr. Martens boots, EU 40", "Chelsea boots, leather, 43", "Leather hiking boots, 42"],
        ["Broken in, very comfortable.", "Recently resoled.", "Polished."],
        ["boots", "leather"];
    "board game", "games", 20,
        ["Board game: Catan", "Board game: Ticket to Ride", "Board game: Carcassonne", "Board game: Wingspan"],
        ["All pieces counted.", "Played a handful of times.", "Expansion included."],
        ["board game", "game"], multi;
    "video game", "games", 18,
        ["Switch game: Mario Kart 8", "PS5 game: Elden Ring", "Switch game: Zelda", "Xbox game: Forza Horizon"],
        ["Disc without scratches.", "Original case.", "Finished it, time to pass it on."],
        ["video game", "switch", "ps5"], multi;
    "jigsaw puzzle", "games", 8,
        ["1000-piece jigsaw puzzle", "Ravensburger puzzle, 1500 pieces", "Panorama jigsaw puzzle"],
        ["All pieces there (counted!).", "Done once.", "Beautiful picture."],
        ["puzzle", "jigsaw"], multi;
    "game console", "games", 90,
        ["Nintendo Switch console", "PlayStation 4 with controller", "Xbox Series S"],
        ["Two controllers included.", "Factory reset.", "All cables in the box."],
        ["console", "switch", "playstation"];
    "potted monstera", "plants", 15,
        ["Monstera plant in pot", "Large monstera deliciosa", "Monstera cutting, rooted"],
        ["Healthy, new leaf every month.", "Moving, cannot take it.", "Pot included."],
        ["monstera", "plant"], multi;
    "succulent set", "plants", 8,
        ["Set of 5 succulents", "Succulents in ceramic pots", "Cactus and succulent trio"],
        ["Almost impossible to kill.", "Perfect for a desk.", "Propagated myself."],
        ["succulent", "cactus", "plant"], multi;
    "herb garden kit", "plants", 10,
        ["Indoor herb garden kit", "Basil, mint and parsley planters", "Windowsill herb garden"],
        ["Self-watering pots.", "Seeds included.", "Fresh herbs for lunch."],
        ["herbs", "garden", "plant"], multi;
    "acoustic guitar", "music", 70,
        ["Yamaha acoustic guitar", "Acoustic guitar with gig bag", "Fender acoustic guitar"],
        ["New strings.", "Stays in tune.", "Great for campfires."],
        ["guitar", "acoustic"];
    "ukulele", "music", 25,
        ["Soprano ukulele", "Concert ukulele with tuner", "Kala ukulele"],
        ["Comes with a gig bag.", "Easy to learn.", "Nice warm sound."],
        ["ukulele", "uke"];
    "camping stove", "outdoors", 22,
        ["Camping gas stove", "Jetboil camping stove", "Two-burner camping stove"],
        ["Gas canister not included.", "Boils water in two minutes.", "Folds small."],
        ["stove", "camping"];
    "backpack", "outdoors", 30,
        ["Hiking backpack, 40 l", "Laptop backpack", "Osprey daypack"],
        ["Padded laptop sleeve.", "Rain cover included.", "All zips work."],
        ["backpack", "bag", "rucksack"];
};

/// Conditions: name, factor in per mille of the reference, weight (how common), sentence.
pub const CONDITIONS: &[(&str, i64, u32, &str)] = &[
    ("new", 1000, 10, "Brand new, never used."),
    ("like new", 900, 25, "Used a couple of times, looks new."),
    ("good", 750, 40, "Normal signs of use, works perfectly."),
    ("fair", 550, 20, "Visible wear, but does the job."),
    ("for parts", 250, 5, "Broken: sold for parts or repair."),
];

const NAMES: &[&str] = &[
    "Ada",
    "Aiko",
    "Alba",
    "Amara",
    "Ana",
    "Anders",
    "Anouk",
    "Aran",
    "Astrid",
    "Bea",
    "Ben",
    "Bilal",
    "Bruno",
    "Camille",
    "Carlos",
    "Chen",
    "Chiara",
    "Dara",
    "David",
    "Elif",
    "Elena",
    "Emil",
    "Erik",
    "Esther",
    "Fatima",
    "Felix",
    "Fern",
    "Finn",
    "Gabriel",
    "Greta",
    "Hana",
    "Hassan",
    "Hugo",
    "Ida",
    "Ines",
    "Ivan",
    "Jamal",
    "Jana",
    "Jonas",
    "Julia",
    "Kai",
    "Karim",
    "Kasia",
    "Lars",
    "Lea",
    "Leon",
    "Lina",
    "Lucas",
    "Maya",
    "Mateo",
    "Mei",
    "Mira",
    "Nadia",
    "Nico",
    "Nina",
    "Noah",
    "Olga",
    "Omar",
    "Oskar",
    "Paula",
    "Pedro",
    "Priya",
    "Rafael",
    "Rosa",
    "Ruth",
    "Sami",
    "Sara",
    "Sofia",
    "Tariq",
    "Theo",
    "Tomas",
    "Uma",
    "Valentina",
    "Victor",
    "Wen",
    "Yara",
    "Yusuf",
    "Zara",
    "Zoe",
    "Marta",
    "Hiro",
    "Luca",
    "Amir",
    "Ingrid",
    "Jorge",
    "Kofi",
    "Leila",
    "Mateja",
    "Nils",
    "Petra",
    "Quentin",
    "Reza",
    "Selin",
    "Tove",
    "Ugo",
    "Vera",
    "Wiktor",
    "Xenia",
    "Yosef",
    "Zeynep",
];

const PERSONAS: &[&str] = &[
    "polite and patient",
    "friendly but firm",
    "hard bargainer",
    "in a hurry, wants quick deals",
    "chatty, likes to tell the story of each item",
    "businesslike and brief",
];

const WANT_PHRASES: &[&str] = &[
    "Looking for a {t}",
    "Would love a {t}",
    "Need a {t}, happy to pick it up",
    "Searching for a decent {t}",
    "Anyone selling a {t}?",
];

/// Cents to the nearest whole dollar, at least $1.
fn whole_dollars(cents: i64) -> i64 {
    (((cents + 50) / 100) * 100).max(100)
}

/// Cents rounded up to a whole dollar.
fn whole_dollars_up(cents: i64) -> i64 {
    ((cents + 99) / 100) * 100
}

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn condition(rng: &mut StdRng) -> (&'static str, i64, &'static str) {
    let total: u32 = CONDITIONS.iter().map(|c| c.2).sum();
    let mut r = rng.random_range(0..total);
    for &(name, factor, weight, sentence) in CONDITIONS {
        if r < weight {
            return (name, factor, sentence);
        }
        r -= weight;
    }
    unreachable!("weights cover the range")
}

fn shuffle<T>(rng: &mut StdRng, xs: &mut [T]) {
    for i in (1..xs.len()).rev() {
        let j = rng.random_range(0..=i);
        xs.swap(i, j);
    }
}

/// One participant with its items (3–11) and style; also the catalogue indices of the types
/// it sells.
fn generated_participant(
    rng: &mut StdRng,
    name: String,
    pid: &str,
    budget: i64,
) -> (Profile, BTreeSet<usize>) {
    let n_items = rng.random_range(3..=11);
    let mut sell = Vec::with_capacity(n_items);
    let mut types = BTreeSet::new();
    for n in 1..=n_items {
        let k = rng.random_range(0..CATALOGUE.len());
        types.insert(k);
        sell.push(generated_item(
            rng,
            &CATALOGUE[k],
            format!("item-{pid}-{n}"),
        ));
    }
    let persona = pick(rng, PERSONAS).to_string();
    let patience = rng.random_range(8..=16);
    let profile = Profile {
        version: haggle_agents::profile::PROFILE_VERSION,
        name,
        budget,
        currency: "USD".into(),
        sell,
        want: Vec::new(),
        owns: Vec::new(),
        style: Style {
            persona,
            patience,
            may_reveal_limits: false,
        },
        autonomy: Autonomy::default(),
    };
    (profile, types)
}

/// An item of the catalogue's `kind`: its condition, floor (50–90% of the reference, less for
/// wear), asking price (a 20–80% markup), title and description.
fn generated_item(rng: &mut StdRng, kind: &Kind, item_id: String) -> SellItem {
    let (cond, factor, sentence) = if kind.service {
        ("n/a", 1000, "Offered as a service: no wear and tear.")
    } else {
        condition(rng)
    };
    let floor_share = rng.random_range(500..=900);
    let floor = whole_dollars(kind.reference * factor / 1000 * floor_share / 1000);
    let markup = rng.random_range(1200..=1800);
    let asking = whole_dollars_up(floor * markup / 1000).max(floor + 100);
    let title = pick(rng, kind.titles).to_string();
    let detail = pick(rng, kind.details);
    let pickup = *pick(
        rng,
        &[
            "Pick-up at the office.",
            "Can bring it on Monday.",
            "Collect from my desk.",
        ],
    );
    SellItem {
        item_id,
        item_type: kind.item_type.to_string(),
        title,
        description: format!("{detail} {sentence} {pickup}"),
        category: kind.category.to_string(),
        condition: cond.to_string(),
        asking_price: asking,
        floor_price: floor,
        attributes: BTreeMap::new(),
        claims: Default::default(),
        true_state: None,
        shipping_price: None,
        true_transit: None,
    }
}

/// 3–5 wants (fewer if fewer types are `available`) of types others sell, shuffled, with
/// shuffled priorities; sometimes one or two further available types already owned.
fn add_wants(rng: &mut StdRng, profile: &mut Profile, pid: &str, mut available: Vec<usize>) {
    shuffle(rng, &mut available);
    let n_wants = rng.random_range(3..=5).min(available.len());
    let mut priorities: Vec<u32> = (1..=n_wants as u32).collect();
    shuffle(rng, &mut priorities);
    for (n, &k) in available[..n_wants].iter().enumerate() {
        let kind = &CATALOGUE[k];
        let spread = rng.random_range(700..=1400);
        let max_price = whole_dollars(kind.reference * spread / 1000);
        let quantity = if kind.multi && rng.random_range(0..10) == 0 {
            2
        } else {
            1
        };
        let description = pick(rng, WANT_PHRASES).replace("{t}", kind.item_type);
        profile.want.push(Want {
            want_id: format!("want-{pid}-{}", n + 1),
            item_type: kind.item_type.to_string(),
            description,
            category: kind.category.to_string(),
            keywords: kind.keywords.iter().map(|k| k.to_string()).collect(),
            max_price,
            priority: priorities[n],
            quantity,
        });
    }
    // Some already own a type others sell (a duplicate they should not buy).
    if rng.random_range(0..100) < 35 {
        let owned = rng.random_range(1..=2);
        for &k in available[n_wants..].iter().take(owned) {
            profile.owns.push(CATALOGUE[k].item_type.to_string());
        }
    }
}

/// A realistic office classifieds market of `participants` colleagues, each with `budget`
/// (minor units, USD). About 7 items per participant (3–11), 3–5 wants per participant of item
/// types others sell, and sometimes an item type already owned. Same arguments, same scenario:
/// the random draws come in one order (names, then each participant's items and style, then
/// each participant's wants and owned types), which the steps below keep.
pub fn generate(seed: u64, participants: usize, budget: i64) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let width = participants.to_string().len();

    let mut names: Vec<&str> = NAMES.to_vec();
    shuffle(&mut rng, &mut names);
    let mut profiles = Vec::with_capacity(participants);
    // The item types each participant sells.
    let mut sells: Vec<BTreeSet<usize>> = Vec::with_capacity(participants);
    for p in 0..participants {
        let base = names[p % names.len()];
        let name = if p < names.len() {
            base.to_string()
        } else {
            format!("{base} {}", p / names.len() + 1)
        };
        let pid = format!("{:0width$}", p + 1);
        let (profile, types) = generated_participant(&mut rng, name, &pid, budget);
        profiles.push(profile);
        sells.push(types);
    }

    // Who sells each type, to draw wants from what others sell.
    let mut sellers_of: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (p, types) in sells.iter().enumerate() {
        for &k in types {
            sellers_of.entry(k).or_default().insert(p);
        }
    }
    for (p, profile) in profiles.iter_mut().enumerate() {
        let pid = format!("{:0width$}", p + 1);
        let available: Vec<usize> = sellers_of
            .iter()
            .filter(|(k, s)| !sells[p].contains(k) && s.iter().any(|&q| q != p))
            .map(|(&k, _)| k)
            .collect();
        add_wants(&mut rng, profile, &pid, available);
    }

    let reference_prices = CATALOGUE
        .iter()
        .map(|k| (k.item_type.to_string(), k.reference))
        .collect();
    Scenario {
        name: format!("office-market-{seed}"),
        seed,
        currency: "USD".into(),
        budget_default: budget,
        reference_prices,
        truncate_long_text: false,
        truncated: Vec::new(),
        sessions: Vec::new(),
        profiles,
    }
}
