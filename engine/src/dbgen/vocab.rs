//! Realistic names. A schema-agnostic model learns from table and column names, so each
//! generated database is named from one domain's vocabulary (a retail shop, a hospital, a
//! school...), with a few alternatives per role so that names vary across seeds.

/// Names for one role: candidate table names and, where the role has them, a column name
/// and its values.
pub struct Names {
    pub tables: &'static [&'static str],
    pub col: &'static str,
    pub values: &'static [&'static str],
}

const fn n(
    tables: &'static [&'static str],
    col: &'static str,
    values: &'static [&'static str],
) -> Names {
    Names {
        tables,
        col,
        values,
    }
}

pub struct Domain {
    pub name: &'static str,
    /// Entity table; `col`: its segment column; `values`: segments.
    pub entity: Names,
    /// Entity's multiclass target column and its classes, lowest to highest engagement.
    pub tier: Names,
    /// Prefix of text keys of the entity (`CUST-000123`).
    pub entity_prefix: &'static str,
    /// The main event table; `col`: its amount column; `values`: its channel values.
    pub order: Names,
    /// Lines of an event; `col`: quantity column.
    pub line: Names,
    /// Items; `col`: price column; `values`: words for item names.
    pub item: Names,
    pub item_prefix: &'static str,
    /// Item categories; `values`: category names.
    pub category: Names,
    /// Item makers; `values`: maker names.
    pub brand: Names,
    /// Follow-ups of a line (returns...); `col`: reason column.
    pub followup: Names,
    /// Frequent light events (sessions...); `col`: duration column; `values`: devices.
    pub session: Names,
    /// Problems (tickets...); `col`: priority column; `values`: priorities, worst last.
    pub ticket: Names,
    /// Groups joined by entities; `col`: kind column; `values`: kinds, the one that
    /// raises activity first.
    pub group: Names,
    /// The link table between entity and group.
    pub link: Names,
    /// Staff looking after entities (self-referencing manager); `values`: titles.
    pub staff: Names,
    pub branch: Names,
    /// Yearly summaries per entity (composite key); `col`: score column.
    pub periodic: Names,
    /// Detail rows of a yearly summary (composite foreign key).
    pub periodic_detail: Names,
    /// Noise tables and columns in this domain's words.
    pub noise_tables: &'static [&'static str],
}

const REGIONS: Names = n(
    &["regions", "sales_regions", "territories", "areas"],
    "market_tier",
    &[
        "north", "south", "east", "west", "central", "coastal", "metro", "rural",
    ],
);
const COUNTRIES: Names = n(
    &["countries", "markets", "nations"],
    "income_level",
    &[
        "France", "Germany", "Spain", "Italy", "Brazil", "Canada", "Japan", "India", "Kenya",
        "Mexico", "Poland", "Chile",
    ],
);

pub fn regions() -> &'static Names {
    &REGIONS
}

pub fn countries() -> &'static Names {
    &COUNTRIES
}

#[rustfmt::skip]
pub static DOMAINS: &[Domain] = &[
    Domain {
        name: "retail",
        entity: n(&["customers", "clients", "shoppers"], "segment", &["consumer", "small_business", "corporate", "student", "senior"]),
        tier: n(&[], "loyalty_tier", &["bronze", "silver", "gold", "platinum"]),
        entity_prefix: "CUST",
        order: n(&["orders", "purchases", "sales"], "total_amount", &["web", "store", "phone", "app"]),
        line: n(&["order_items", "order_lines", "basket_items"], "quantity", &[]),
        item: n(&["products", "articles", "items"], "list_price", &["lamp", "chair", "kettle", "shirt", "phone", "book", "desk", "mug", "shoe", "watch"]),
        item_prefix: "SKU",
        category: n(&["categories", "product_categories", "departments"], "", &["home", "garden", "toys", "books", "electronics", "fashion", "sports", "beauty", "food", "office", "pets", "tools"]),
        brand: n(&["brands", "suppliers", "manufacturers"], "", &["acme", "northwind", "globex", "initech", "umbrella", "stark", "wayne", "hooli", "vandelay"]),
        followup: n(&["returns", "refunds", "complaints"], "reason", &["damaged", "wrong_size", "late", "not_as_described", "changed_mind"]),
        session: n(&["web_sessions", "site_visits", "app_sessions"], "duration_s", &["desktop", "mobile", "tablet"]),
        ticket: n(&["support_tickets", "service_requests", "helpdesk_cases"], "priority", &["low", "medium", "high"]),
        group: n(&["loyalty_programs", "campaigns", "newsletters"], "program_type", &["premium", "seasonal", "partner", "newsletter"]),
        link: n(&["program_enrollments", "campaign_members", "subscriptions_map"], "", &[]),
        staff: n(&["sales_reps", "account_managers", "store_staff"], "title", &["associate", "senior", "lead", "director"]),
        branch: n(&["stores", "branches", "outlets"], "", &[]),
        periodic: n(&["annual_reviews", "yearly_summaries"], "satisfaction_score", &[]),
        periodic_detail: n(&["annual_review_lines", "yearly_summary_items"], "", &[]),
        noise_tables: &["warehouses", "currencies", "promotions", "shipping_methods", "tax_rates", "gift_cards", "audit_log", "price_changes", "inventory_counts", "store_events", "coupons", "suppliers_contacts"],
    },
    Domain {
        name: "healthcare",
        entity: n(&["patients", "members", "enrollees"], "insurance_type", &["public", "private", "self_pay", "employer", "veteran"]),
        tier: n(&[], "risk_group", &["low", "moderate", "elevated", "high"]),
        entity_prefix: "PAT",
        order: n(&["encounters", "visits", "admissions"], "billed_amount", &["outpatient", "inpatient", "emergency", "telehealth"]),
        line: n(&["prescriptions", "procedures", "orders_placed"], "dose_units", &[]),
        item: n(&["medications", "drugs", "treatments"], "unit_cost", &["statin", "insulin", "beta", "ace", "opioid", "antibiotic", "steroid", "antiviral"]),
        item_prefix: "NDC",
        category: n(&["drug_classes", "therapeutic_areas", "formulary_groups"], "", &["cardio", "endocrine", "neuro", "respiratory", "oncology", "infectious", "renal", "gastro", "derm", "psych"]),
        brand: n(&["manufacturers", "labs", "pharma_companies"], "", &["medico", "healix", "curagen", "vitaco", "pharmex", "biolab", "novacare"]),
        followup: n(&["adverse_events", "readmissions", "side_effects"], "severity", &["mild", "moderate", "severe", "unknown"]),
        session: n(&["portal_logins", "vital_readings", "device_readings"], "duration_s", &["web", "ios", "android"]),
        ticket: n(&["incidents", "alerts", "care_escalations"], "acuity", &["low", "medium", "high"]),
        group: n(&["care_programs", "clinical_trials", "support_groups"], "program_kind", &["disease_management", "wellness", "trial", "community"]),
        link: n(&["program_participants", "trial_enrollments", "group_memberships"], "", &[]),
        staff: n(&["physicians", "providers", "care_managers"], "specialty_level", &["resident", "attending", "senior", "chief"]),
        branch: n(&["clinics", "hospitals", "care_sites"], "", &[]),
        periodic: n(&["annual_checkups", "yearly_assessments"], "health_score", &[]),
        periodic_detail: n(&["checkup_measurements", "assessment_items"], "", &[]),
        noise_tables: &["wards", "beds", "insurers", "lab_panels", "equipment", "shifts", "icd_codes", "audit_events", "room_bookings", "formulary_changes", "pharmacies", "referral_sources"],
    },
    Domain {
        name: "education",
        entity: n(&["students", "learners", "pupils"], "program", &["undergrad", "graduate", "exchange", "part_time", "online"]),
        tier: n(&[], "performance_band", &["at_risk", "average", "good", "excellent"]),
        entity_prefix: "STU",
        order: n(&["enrollments", "registrations", "course_attempts"], "credits", &["campus", "online", "hybrid"]),
        line: n(&["submissions", "assignment_submissions", "quiz_attempts"], "attempt_no", &[]),
        item: n(&["courses", "modules", "classes"], "fee", &["algebra", "biology", "history", "poetry", "physics", "ethics", "finance", "drawing"]),
        item_prefix: "CRS",
        category: n(&["departments", "faculties", "subjects"], "", &["math", "science", "arts", "languages", "business", "engineering", "law", "medicine"]),
        brand: n(&["instructors_pool", "publishers", "curricula"], "", &["oxbridge", "openlearn", "edupress", "scholar", "campusco"]),
        followup: n(&["regrade_requests", "appeals", "resubmissions"], "reason", &["late", "grading_error", "illness", "technical"]),
        session: n(&["lms_logins", "library_visits", "lecture_views"], "minutes", &["laptop", "phone", "lab_pc"]),
        ticket: n(&["advising_notes", "warnings", "disciplinary_cases"], "level", &["info", "notice", "serious"]),
        group: n(&["clubs", "study_groups", "societies"], "club_type", &["academic", "sports", "arts", "volunteer"]),
        link: n(&["club_memberships", "group_members", "society_members"], "", &[]),
        staff: n(&["advisors", "tutors", "mentors"], "rank", &["assistant", "associate", "full", "emeritus"]),
        branch: n(&["campuses", "schools", "colleges"], "", &[]),
        periodic: n(&["yearly_transcripts", "annual_evaluations"], "gpa", &[]),
        periodic_detail: n(&["transcript_entries", "evaluation_items"], "", &[]),
        noise_tables: &["rooms", "buildings", "semesters_calendar", "scholarships", "textbooks", "parking_permits", "events_log", "cafeteria_menus", "exam_rooms", "sports_fixtures", "library_books", "alumni_events"],
    },
    Domain {
        name: "fintech",
        entity: n(&["accounts", "cardholders", "borrowers"], "account_type", &["checking", "savings", "business", "student", "premium"]),
        tier: n(&[], "credit_band", &["subprime", "near_prime", "prime", "super_prime"]),
        entity_prefix: "ACC",
        order: n(&["transactions", "payments", "transfers"], "amount", &["pos", "online", "atm", "wire"]),
        line: n(&["transaction_splits", "payment_allocations", "ledger_entries"], "units", &[]),
        item: n(&["merchants", "payees", "billers"], "avg_ticket", &["cafe", "grocer", "airline", "hotel", "pharmacy", "garage", "cinema", "gym"]),
        item_prefix: "MER",
        category: n(&["merchant_categories", "mcc_groups", "sectors"], "", &["travel", "dining", "grocery", "fuel", "health", "entertainment", "utilities", "retail"]),
        brand: n(&["acquirers", "networks", "processors"], "", &["visa_like", "mastercard_like", "amex_like", "local_net", "paynet"]),
        followup: n(&["chargebacks", "disputes", "reversals"], "reason_code", &["fraud", "duplicate", "not_received", "defective"]),
        session: n(&["app_logins", "balance_checks", "online_banking_sessions"], "seconds", &["ios", "android", "web"]),
        ticket: n(&["fraud_alerts", "complaints", "service_cases"], "severity", &["low", "medium", "high"]),
        group: n(&["reward_programs", "offers", "savings_goals"], "offer_type", &["cashback", "travel", "partner", "newsletter"]),
        link: n(&["offer_activations", "program_members", "goal_participants"], "", &[]),
        staff: n(&["relationship_managers", "advisors", "loan_officers"], "grade", &["junior", "officer", "senior", "head"]),
        branch: n(&["branches", "offices", "service_centers"], "", &[]),
        periodic: n(&["annual_statements", "yearly_credit_reviews"], "credit_score", &[]),
        periodic_detail: n(&["statement_lines", "review_factors"], "", &[]),
        noise_tables: &["atms", "exchange_rates", "interest_rates", "fee_schedules", "holidays", "audit_trail", "card_batches", "kyc_documents", "regulators", "product_terms", "atm_maintenance", "marketing_spend"],
    },
    Domain {
        name: "saas",
        entity: n(&["organizations", "workspaces", "tenants"], "plan", &["free", "starter", "team", "business", "enterprise"]),
        tier: n(&[], "health_status", &["red", "yellow", "green", "champion"]),
        entity_prefix: "ORG",
        order: n(&["invoices", "billing_events", "charges"], "amount_due", &["card", "invoice", "marketplace"]),
        line: n(&["invoice_lines", "line_items", "usage_records"], "seats", &[]),
        item: n(&["features", "addons", "integrations"], "monthly_price", &["sso", "audit", "api", "storage", "analytics", "backup", "chat", "export"]),
        item_prefix: "FEAT",
        category: n(&["feature_groups", "product_areas", "modules"], "", &["security", "collaboration", "data", "admin", "automation", "reporting"]),
        brand: n(&["vendors", "partners", "publishers"], "", &["cloudco", "stackly", "bytewise", "datanest", "opsly"]),
        followup: n(&["refund_requests", "credit_notes", "downgrades"], "reason", &["billing_error", "unused", "bug", "price"]),
        session: n(&["user_events", "logins", "api_calls"], "latency_ms", &["web", "desktop", "mobile", "api"]),
        ticket: n(&["support_tickets", "bug_reports", "escalations"], "priority", &["p3", "p2", "p1"]),
        group: n(&["beta_programs", "webinars", "communities"], "kind", &["beta", "training", "partner", "newsletter"]),
        link: n(&["beta_participants", "webinar_attendees", "community_members"], "", &[]),
        staff: n(&["csm_agents", "account_executives", "support_engineers"], "level", &["l1", "l2", "l3", "manager"]),
        branch: n(&["teams", "pods", "offices"], "", &[]),
        periodic: n(&["annual_renewals", "yearly_business_reviews"], "nps", &[]),
        periodic_detail: n(&["renewal_terms", "review_action_items"], "", &[]),
        noise_tables: &["datacenters", "release_notes", "feature_flags", "incidents_public", "pricing_versions", "audit_events", "status_pages", "email_templates", "webhooks", "sdk_versions", "regions_cloud", "maintenance_windows"],
    },
    Domain {
        name: "gaming",
        entity: n(&["players", "gamers", "users"], "platform", &["pc", "console", "mobile", "cloud", "handheld"]),
        tier: n(&[], "spender_class", &["free", "minnow", "dolphin", "whale"]),
        entity_prefix: "PLR",
        order: n(&["matches_played", "game_sessions", "purchases"], "score", &["ranked", "casual", "event", "coop"]),
        line: n(&["item_drops", "loot_events", "purchase_items"], "stack_size", &[]),
        item: n(&["game_items", "skins", "assets"], "gem_price", &["sword", "helmet", "potion", "mount", "emote", "banner", "shield", "pet"]),
        item_prefix: "ITM",
        category: n(&["item_types", "rarities", "collections"], "", &["weapon", "armor", "cosmetic", "consumable", "pet", "mount"]),
        brand: n(&["studios", "artists", "seasons_catalog"], "", &["pixelforge", "moonbyte", "ironclad", "lumen", "orbital"]),
        followup: n(&["refunds", "trades", "item_reports"], "reason", &["accidental", "scam", "bug", "duplicate"]),
        session: n(&["logins", "chat_messages", "lobby_visits"], "seconds", &["pc", "ps", "xbox", "phone"]),
        ticket: n(&["player_reports", "bans", "moderation_cases"], "severity", &["minor", "major", "critical"]),
        group: n(&["guilds", "clans", "teams"], "guild_type", &["competitive", "casual", "social", "newbie"]),
        link: n(&["guild_members", "clan_memberships", "team_rosters"], "", &[]),
        staff: n(&["moderators", "community_managers", "game_masters"], "rank", &["trial", "regular", "senior", "lead"]),
        branch: n(&["servers", "shards", "realms"], "", &[]),
        periodic: n(&["season_summaries", "yearly_rankings"], "elo", &[]),
        periodic_detail: n(&["season_awards", "ranking_entries"], "", &[]),
        noise_tables: &["maps", "patches", "tournaments", "achievements", "server_status", "ad_impressions", "daily_quests", "event_calendar", "shop_rotations", "leaderboards_archive", "bots", "voice_channels"],
    },
];

/// Names of noise columns, by kind.
#[rustfmt::skip]
pub const NOISE_NUM: &[&str] = &[
    "weight_kg", "height_cm", "temperature", "latitude", "longitude", "altitude", "distance_km",
    "pressure", "ratio", "score_raw", "index_value", "margin", "tax_rate", "discount_pct",
    "version_no", "batch_size", "page_count", "depth", "elapsed_ms", "capacity", "load_factor",
    "humidity", "speed", "volume_l", "cost_center", "priority_score",
];
#[rustfmt::skip]
pub const NOISE_SKEWED: &[&str] = &[
    "lifetime_value", "balance", "follower_count", "file_size_kb", "views", "downloads",
    "revenue_est", "credit_limit", "employees", "traffic", "impressions", "bytes_sent",
];
#[rustfmt::skip]
pub const NOISE_CAT_LOW: &[(&str, &[&str])] = &[
    ("status", &["active", "inactive", "pending"]),
    ("color", &["red", "green", "blue", "black", "white"]),
    ("size", &["s", "m", "l", "xl"]),
    ("channel", &["email", "sms", "push", "none"]),
    ("language", &["en", "fr", "de", "es", "pt", "it"]),
    ("currency", &["usd", "eur", "gbp", "jpy"]),
    ("gender", &["f", "m", "x", "unknown"]),
    ("source", &["organic", "paid", "referral", "partner", "direct"]),
    ("os", &["windows", "macos", "linux", "ios", "android"]),
    ("payment_method", &["card", "transfer", "cash", "wallet"]),
    ("quality_flag", &["ok", "suspect", "bad"]),
    ("shift", &["morning", "evening", "night"]),
];
#[rustfmt::skip]
pub const NOISE_CAT_HIGH: &[&str] = &[
    "city", "postal_code", "employer", "referrer_domain", "device_model", "browser_version",
    "campaign_code", "street", "sku_variant", "username_hash",
];
#[rustfmt::skip]
pub const NOISE_BOOL: &[&str] = &[
    "is_verified", "opt_in_marketing", "is_flagged", "has_discount", "is_test", "newsletter",
    "two_factor", "is_archived", "paperless", "auto_renew",
];
#[rustfmt::skip]
pub const NOISE_DATE: &[&str] = &[
    "date_of_birth", "expiry_date", "valid_until", "due_date", "birth_date", "card_expiry",
];
#[rustfmt::skip]
pub const NOISE_NOTE: &[&str] = &["notes", "comment", "description", "remarks", "memo"];
#[rustfmt::skip]
pub const WORDS: &[&str] = &[
    "fast", "blue", "quiet", "broken", "urgent", "fine", "late", "new", "old", "small", "large",
    "check", "call", "back", "again", "please", "thanks", "issue", "ok", "review", "later",
];
#[rustfmt::skip]
pub const CITIES: &[&str] = &[
    "springfield", "riverton", "lakeside", "fairview", "georgetown", "franklin", "clinton",
    "salem", "madison", "arlington", "ashland", "oakdale", "milton", "newport", "bristol",
];

/// The singular of a plural table name, for key columns (`categories` → `category`).
pub fn singular(name: &str) -> String {
    let (head, last) = match name.rsplit_once('_') {
        Some((h, l)) => (format!("{h}_"), l),
        None => (String::new(), name),
    };
    let s = if let Some(x) = last.strip_suffix("ies") {
        format!("{x}y")
    } else if ["sses", "ches", "shes", "uses"]
        .iter()
        .any(|e| last.ends_with(e))
    {
        last[..last.len() - 2].to_string()
    } else if let Some(x) = last.strip_suffix('s') {
        if last.ends_with("ss") || last.ends_with("us") {
            last.to_string()
        } else {
            x.to_string()
        }
    } else {
        last.to_string()
    };
    format!("{head}{s}")
}
