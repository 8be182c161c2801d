"""The semantic-recall evaluation set: memories and paraphrased queries that share no keywords.

Each query is a paraphrase of one memory (its target) written with other
words: after lower-casing and dropping stop words, no word of the query
shares a Porter stem (SQLite FTS5's own stemmer) or its first five letters
with a word of its target. :func:`shared_keywords` checks exactly that, and
``tests/test_hub_recall.py`` asserts it for every pair, so keyword search
cannot find a target by construction: what finds it is meaning.

``LEXICAL`` are queries that name an exact identifier of their target (an
error code, a host name, a product): where keyword relevance should help.
Used to choose the fusion (``docs/performance.md``).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

from actors.hub.search import STOP_WORDS

#: (memory, paraphrased query) pairs; the memory is the query's one right answer.
PAIRS: list[tuple[str, str]] = [
    ("The production database runs PostgreSQL 15 on a dedicated host called db-prod-1.",
     "Which relational engine version backs our live environment?"),
    ("Maria prefers code reviews in the morning before standup.",
     "When does she like to look over pull requests?"),
    ("Our CI pipeline caches the pip downloads between runs to save about four minutes.",
     "How do automated builds avoid fetching Python packages again each time?"),
    ("The user is allergic to peanuts and avoids Thai restaurants for that reason.",
     "Any food sensitivities I should remember when booking dinner?"),
    ("API rate limit is 100 requests per minute per key; beyond that the gateway answers 429.",
     "How many calls can one token make each sixty seconds before being throttled?"),
    ("Releases are tagged on Thursdays and shipped to customers the following Monday.",
     "What weekday do we cut versions, and when do users receive them?"),
    ("The office wifi password is written on the whiteboard in the kitchen.",
     "Where can I find the wireless network passphrase at work?"),
    ("Kubernetes pods are restarted automatically when their memory exceeds 2 GiB.",
     "What happens to containers that use too much RAM in the cluster?"),
    ("John owns the billing service and is the person to ask about invoices.",
     "Who is responsible for payments and charging customers?"),
    ("Logs are retained for 30 days in the object store, then deleted.",
     "How long do we keep application output records before they are purged?"),
    ("The frontend is built with React and TypeScript and bundled by Vite.",
     "Which JavaScript UI library and typed language does the web client use?"),
    ("Backups of the main database run every night at 2 AM UTC.",
     "At what hour are copies of our primary records saved each day?"),
    ("The team uses Slack for chat and Zoom for video calls.",
     "Which messaging and conferencing tools does the group rely on?"),
    ("Password resets must go through the identity provider, Okta.",
     "How should someone recover access if they forget their login secret?"),
    ("The mobile app supports iOS 16 and Android 12 or newer.",
     "What minimum phone operating systems are compatible?"),
    ("Customer support hours are 9 to 5 Eastern, Monday through Friday.",
     "When can clients reach the help desk during the week?"),
    ("Sarah is on parental leave until March and Tom covers her tasks.",
     "Who is handling the work of the colleague away with a newborn?"),
    ("The search service uses Elasticsearch with three shards per index.",
     "How is the lookup engine partitioned across nodes?"),
    ("Feature flags are managed in LaunchDarkly; never hard-code toggles.",
     "Where do we control switches that enable new functionality gradually?"),
    ("Expense reports are due by the fifth of each month.",
     "What is the deadline to submit reimbursement claims?"),
    ("The staging environment resets its data every Sunday night.",
     "When does the pre-release sandbox get wiped?"),
    ("Dark mode is the user's preferred theme in every editor.",
     "Does this person like light or black backgrounds when coding?"),
    ("The cat is named Whiskers and needs medication twice a day.",
     "What is the pet called and how often does it take its pills?"),
    ("Our SLA promises 99.9% uptime measured monthly.",
     "What availability guarantee do we give clients?"),
    ("Terraform state is stored remotely in an S3 bucket with locking in DynamoDB.",
     "Where does our infrastructure-as-code tool keep track of provisioned resources?"),
    ("The user's daughter has a piano recital on the last Saturday of May.",
     "When does the child play her instrument on stage?"),
    ("Error code E1234 means the license file is missing or expired.",
     "What causes the failure complaining about an absent or outdated entitlement?"),
    ("Meetings with the design team happen every other Wednesday.",
     "How frequently do we sync with the UX folks?"),
    ("The company's fiscal year starts on July 1.",
     "When does our financial calendar begin?"),
    ("Use black and ruff to format and lint Python code before committing.",
     "Which tools tidy and check source style prior to a push?"),
    ("The VPN must be on to reach internal dashboards from home.",
     "How do I access company metrics pages remotely?"),
    ("Marco is vegetarian, so book restaurants with meat-free options.",
     "What should I keep in mind about his diet when reserving a table?"),
    ("Invoices over $10,000 need approval from the CFO.",
     "Who must sign off on large bills?"),
    ("The laptop fleet runs macOS and is managed with Jamf.",
     "What operating system do employee computers use, and how are they administered?"),
    ("Data science notebooks live in the analytics repository under /notebooks.",
     "Where are the Jupyter experiments for ML kept?"),
    ("The user wants summaries in bullet points, not long paragraphs.",
     "How does this person like answers formatted?"),
    ("On-call rotation switches every Monday at 10 AM.",
     "When does pager duty hand over to the next engineer?"),
    ("The primary brand color is #1A73E8, a medium blue.",
     "Which hue represents our visual identity?"),
    ("Load testing showed the API handles 2,000 requests per second on four instances.",
     "What throughput did the stress benchmark reach?"),
    ("Gift ideas for Anna: she loves gardening and Japanese tea.",
     "What present would my friend enjoy?"),
    ("Passwords must be at least 14 characters and rotated yearly.",
     "What are the rules for login secrets length and renewal?"),
    ("The print server in building B is out of toner until next week.",
     "Why can't I get documents on paper in the second office?"),
    ("Onboarding new hires takes two weeks, starting with security training.",
     "How long is the ramp-up for recently recruited staff?"),
    ("The user drinks oat milk and dislikes coffee.",
     "What beverage preferences does this person have?"),
    ("Email newsletters are sent with Mailchimp every first Tuesday.",
     "Which platform distributes our periodic subscriber bulletins?"),
    ("GraphQL queries are limited to a depth of 7 to prevent abuse.",
     "How deeply can clients nest their API selections?"),
    ("The parking garage closes at 11 PM on weekdays.",
     "Until what time can I leave my car in the lot?"),
    ("Translations are handled by Lokalise and reviewed by native speakers.",
     "How do we manage localization into other languages?"),
    ("The user is learning Spanish and practices on Duolingo daily.",
     "Which foreign language is this person studying?"),
    ("Docker images are scanned for vulnerabilities with Trivy in CI.",
     "How are container builds checked for security holes?"),
    ("Our largest customer is Acme Corp, with about 40% of revenue.",
     "Which client brings in the most money?"),
    ("The Raspberry Pi in the closet runs the home automation hub.",
     "What small computer controls the smart house devices?"),
    ("Database migrations must be backward compatible for one release.",
     "Can schema changes break the previous version of the app?"),
    ("The user's flight to Lisbon departs on June 3 at 8:40.",
     "When does the trip to Portugal leave?"),
    ("Weekly metrics review happens Friday afternoon with leadership.",
     "When do executives look at the numbers?"),
    ("The cafeteria serves lunch from 11:30 to 14:00.",
     "What are the hours for the midday meal at work?"),
    ("Secrets must never be committed to git; use environment variables instead.",
     "How should credentials be provided to programs rather than stored in version control?"),
    ("Our monorepo uses Bazel for builds and remote caching.",
     "Which compilation system handles the single repository?"),
    ("The user runs every morning before work, usually five kilometers.",
     "What exercise routine does this person follow at dawn?"),
    ("Quarterly planning happens in the first week of January, April, July and October.",
     "When do we set goals for the next three months?"),
]  # fmt: skip

#: Memories no query targets, from the same walks of life: they make the
#: ranking harder (a query must beat them too), never easier.
DISTRACTORS: list[str] = [
    "The analytics dashboard refreshes every fifteen minutes.",
    "Redis is used as a cache in front of the product catalog.",
    "The user's brother lives in Toronto and visits in December.",
    "Standup is at 9:30 in the small meeting room.",
    "Our error tracker is Sentry; alerts go to the #incidents channel.",
    "The marketing site is hosted on Netlify.",
    "Interns start in June and stay for twelve weeks.",
    "The user prefers window seats on long flights.",
    "Kafka topics keep messages for seven days.",
    "The legal team must review every new vendor contract.",
    "The old Jenkins server was retired last spring.",
    "The user's favourite author is Ursula K. Le Guin.",
    "Office plants are watered on Mondays by the facilities team.",
    "Our Python services target version 3.11.",
    "The design system lives in Figma under the Components project.",
    "The user plays tennis on Wednesday evenings.",
    "Customer churn rose slightly in the last quarter.",
    "The cloud bill is reviewed monthly by the finance lead.",
    "Access badges must be worn visibly inside the building.",
    "The user is saving for a house and avoids big purchases.",
    "The recommendation model is retrained every week on fresh clicks.",
    "Two-factor authentication is mandatory for all admin accounts.",
    "The company retreat is in the mountains this September.",
    "The user's car needs its tyres changed before winter.",
    "Support tickets are triaged within four business hours.",
    "The data warehouse is Snowflake, loaded nightly by Airflow.",
    "Code owners must approve changes to the payments module.",
    "The user reads the news in the evening, not in the morning.",
    "Holiday requests need two weeks' notice.",
    "The staging cluster has half the nodes of production.",
    "The user's mother has a birthday on the twelfth of August.",
    "Images are resized on upload to at most 2048 pixels.",
    "Security patches are applied within 72 hours of release.",
    "The team lunch budget is fifteen euros per person.",
    "Websocket connections time out after five idle minutes.",
    "The user keeps a paper journal for ideas.",
    "New repositories start from the company template.",
    "The sales team uses HubSpot as its CRM.",
    "Uptime alerts page the on-call engineer after two failed checks.",
    "The user volunteers at the animal shelter on Sundays.",
]

#: Queries that name an exact identifier of their target memory (index into PAIRS).
LEXICAL: list[tuple[int, str]] = [
    (0, "what is db-prod-1"),
    (4, "status 429"),
    (8, "ask John"),
    (10, "Vite config"),
    (13, "Okta"),
    (17, "Elasticsearch shards"),
    (18, "LaunchDarkly"),
    (22, "Whiskers"),
    (24, "DynamoDB locking"),
    (26, "E1234"),
    (33, "Jamf"),
    (37, "#1A73E8"),
    (44, "Mailchimp"),
    (47, "Lokalise"),
    (49, "Trivy"),
    (50, "Acme Corp"),
    (53, "Lisbon"),
    (57, "Bazel"),
]


def _stems(texts: Iterable[str]) -> list[set[str]]:
    """Porter stems of each text's words, from SQLite FTS5's own tokenizer."""
    out = []
    db = sqlite3.connect(":memory:")
    try:
        for text in texts:
            db.execute("DROP TABLE IF EXISTS t")
            db.execute("DROP TABLE IF EXISTS v")
            db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61')")
            db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")
            db.execute("INSERT INTO t(x) VALUES (?)", (text,))
            out.append({row[0] for row in db.execute("SELECT term FROM v")})
    finally:
        db.close()
    return out


def _content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", text.casefold()) if w not in STOP_WORDS]


def shared_keywords(memory: str, query: str) -> set[str]:
    """What a query shares with its memory: Porter stems, or five-letter prefixes, of
    content words (stop words dropped). Empty for a fair paraphrase."""
    words_m, words_q = _content_words(memory), _content_words(query)
    stems_m, stems_q = _stems([" ".join(words_m), " ".join(words_q)])
    prefixes_m = {w[:5] for w in words_m if len(w) >= 5}
    prefixes_q = {w[:5] for w in words_q if len(w) >= 5}
    return (stems_m & stems_q) | (prefixes_m & prefixes_q)
