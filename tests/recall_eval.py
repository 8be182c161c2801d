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

``HARD_PAIRS``, ``HARD_DISTRACTORS`` and ``HARD_LEXICAL`` are a second, harder
set, built the way a held-out benchmark is: 80 new paraphrases (same rule, no
shared keyword with their target) among 200 distractors that each share words
with some query, two or more per query, so plain keyword search ranks the
distractors above the targets; and 15 identifier queries, each identifier
found in its target and in no other memory of any set.
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


#: A harder set, built the way a held-out benchmark is built: 80 paraphrases that share
#: no keyword with their target, and 200 distractors that do share words with the queries.
HARD_PAIRS: list[tuple[str, str]] = [
    ("The billing service keeps invoices in PostgreSQL 15 on pg-billing-01.",
     "Which relational engine holds our payment records?"),
    ("Redis on cache-eu-2 evicts keys with the allkeys-lru policy once it reaches 6 GB.",
     "What happens when the European in-memory store fills up?"),
    ("Priya leads the mobile squad and approves every App Store submission.",
     "Who signs off before an iPhone application ships?"),
    ("The user prefers green tea over espresso in the afternoon.",
     "What hot drink does this person like after lunch?"),
    ("Deploys to production are frozen from December 20 until January 3.",
     "When is shipping new code to live servers blocked over the holidays?"),
    ("Error E4012 from the payment gateway means the card issuer declined the charge.",
     "Why would the processor say the bank refused a purchase?"),
    ("Nightly ETL jobs are scheduled by Dagster on the etl-runner-3 machine.",
     "Which orchestrator kicks off our data pipelines after midnight?"),
    ("Lena works from Kraków and is online between 8 and 16 CET.",
     "During which hours can I reach our Polish colleague?"),
    ("The Grafana board named api-latency shows p99 response times per endpoint.",
     "Where can I see how slow the slowest requests are for each route?"),
    ("TLS certificates renew automatically through cert-manager 30 days before expiry.",
     "How do our HTTPS keys get refreshed ahead of lapsing?"),
    ("The user wants meetings never scheduled before 10 AM.",
     "What is the earliest hour this person accepts calls?"),
    ("The bucket orbit-assets-prod serves static files through CloudFront.",
     "Which CDN delivers images and scripts for the website?"),
    ("Kenji is the go-to person for anything about the Rust parser crate.",
     "Who is the expert on our tokenizing and grammar code?"),
    ("The user's dentist appointment is on October 14 at 15:30.",
     "When do I need to get my teeth checked?"),
    ("Sprint retrospectives happen on alternate Fridays at 16:00 in Room Jupiter.",
     "When does the group reflect on how the last iteration went?"),
    ("The monolith reads its production settings from settings/prod.toml at startup.",
     "Which file holds the live environment options for the big legacy app?"),
    ("Payroll is processed on the 25th; salaries arrive two business days later.",
     "When do employees get paid each month?"),
    ("The user is red-green colorblind, so charts should not rely on those hues.",
     "Any visual accessibility needs to consider when making graphs for this person?"),
    ("All outbound email goes through SendGrid from the address noreply@orbit.dev.",
     "Which service delivers automated messages to customers' inboxes?"),
    ("The box gpu-train-1 has four A100 cards reserved for model training on weekends.",
     "What hardware is set aside for machine learning jobs on Saturdays and Sundays?"),
    ("Incidents get a postmortem within five working days, written in Notion.",
     "How soon after an outage must the review document be published, and where?"),
    ("The user's partner is called Noor and works as a nurse on night shifts.",
     "Who is my significant other and what does she do for a living?"),
    ("Python dependencies are pinned in uv lock files and upgraded by Renovate on Mondays.",
     "How are third-party library versions frozen and bumped weekly?"),
    ("The customer success lead is Fatima; escalate unhappy accounts to her.",
     "Who should handle clients that are angry about our product?"),
    ("The home NAS backs up family photos to Backblaze B2 every night.",
     "Where do the pictures of our kids get copied offsite?"),
    ("Java services run on OpenJDK 21 with the G1 garbage collector.",
     "Which JVM release and memory reclaimer do the backend apps use?"),
    ("The user prefers being addressed as Sam rather than Samuel.",
     "What nickname does this person want me to use?"),
    ("Hotfix branches are cut from the release tag, never from main.",
     "Where should an urgent patch start in version control?"),
    ("The warehouse in Rotterdam ships orders placed before 14:00 on the same day.",
     "By what hour must a purchase be made to leave the Dutch depot immediately?"),
    ("Offsite hotels are capped at 180 euros per night per employee.",
     "How much can we spend on lodging for each attendee of the company trip?"),
    ("The user's running shoes are size 44 and always Asics.",
     "What footwear fits this person for jogging?"),
    ("Access tokens expire after 15 minutes; refresh tokens last 30 days.",
     "How long is a login credential valid before it has to be renewed?"),
    ("The QA environment is reachable only from the office network at qa.internal.orbit.dev.",
     "How do testers get to the pre-release site, and from where?"),
    ("Ahmed translates the Arabic edition of the docs and fixes RTL layout bugs.",
     "Who handles right-to-left language support in our manuals?"),
    ("The user's preferred airline is KLM and the frequent flyer number is on file.",
     "Which carrier does this traveler favour when booking trips?"),
    ("Log lines must be JSON with a trace_id field for correlation.",
     "What format should application output follow so requests can be linked across systems?"),
    ("The board meeting is held on the second Tuesday of every quarter.",
     "When do directors gather?"),
    ("Windows builds are signed with an EV certificate kept on a YubiKey in the safe.",
     "How do we prove our desktop installers are authentic?"),
    ("The user is training for the Berlin marathon in September.",
     "Which long-distance race is this person preparing for?"),
    ("RabbitMQ 3.12 on mq-core-1 carries the queues, with quorum queues enabled.",
     "Which broker passes events between our microservices?"),
    ("Elena's standing 1:1 with her manager is Thursday at 11.",
     "When does she have her weekly one-on-one with the boss?"),
    ("Disk usage alerts fire at 85% full on every database host.",
     "When do we get warned that storage is running out on the data servers?"),
    ("The user reads science fiction and recently finished The Three-Body Problem.",
     "What kind of novels does this person enjoy?"),
    ("Public API docs are generated from the OpenAPI spec by Redoc on every merge.",
     "How is the external interface reference produced?"),
    ("The Kubernetes cluster k8s-west runs version 1.29 and upgrades quarterly.",
     "Which container orchestrator release is our Pacific-coast environment on?"),
    ("Invoices to German customers must include the VAT ID and be issued in euros.",
     "What must bills for Deutschland-based clients contain?"),
    ("The user's son has swimming lessons every Tuesday at 17:00.",
     "When does my kid go to the pool?"),
    ("Feature work merges only after two approvals and green checks.",
     "How many reviewers must sign off before a pull request lands?"),
    ("BigQuery spending is capped at 2,000 dollars a month with alerts at 80%.",
     "What is the budget limit for the cloud analytics warehouse?"),
    ("Tomás is the only one with root access to the legacy mail server.",
     "Who holds administrator privileges on the old email machine?"),
    ("The user dislikes emojis in written replies.",
     "Should I add little pictograms to my messages for this person?"),
    ("The SSO outage on 2024-03-12 was caused by an expired SAML signing certificate.",
     "Why could nobody log in during that spring incident?"),
    ("Our Android app is built with Kotlin and Jetpack Compose.",
     "Which language and UI toolkit power the Google phone client?"),
    ("The all-hands is on Monday at 15:00 and is recorded for other time zones.",
     "When is the company-wide gathering, and can I watch it later?"),
    ("The user keeps their passport in the top drawer of the desk.",
     "Where is my travel document stored at home?"),
    ("The ingestion API rejects payloads larger than 5 MB with HTTP 413.",
     "What is the maximum upload size the intake endpoint accepts?"),
    ("Dmitri maintains the Terraform modules for networking and VPC peering.",
     "Who looks after the infrastructure code for subnets and connecting clouds?"),
    ("Vacation days reset on January 1 and up to five can be carried over.",
     "How many unused holidays roll into the next year?"),
    ("The user listens to jazz while working and finds lyrics distracting.",
     "What kind of music helps this person focus?"),
    ("Mobile crash reports are collected by Firebase Crashlytics.",
     "Where do we see why the phone application stopped unexpectedly?"),
    ("The search index is rebuilt from scratch every Saturday at 03:00 by a cron job.",
     "When is the lookup catalog regenerated completely?"),
    ("Enterprise plan customers get a dedicated Slack channel and a named account manager.",
     "What extra support do our biggest subscription tier clients receive?"),
    ("The user's laptop is a ThinkPad X1 running Fedora 40.",
     "What machine and operating system does this person work on?"),
    ("Grace approves all public blog posts before publication.",
     "Who signs off on articles for the company website?"),
    ("Secrets are stored in HashiCorp Vault under the path kv/prod.",
     "Where do we keep passwords and API keys for live systems?"),
    ("The load balancer drains connections for 30 seconds before a pod shuts down.",
     "How long do in-flight requests get to finish when a container is stopped?"),
    ("The user always wants a quiet hotel room away from the elevator.",
     "Any lodging preferences for this person when traveling?"),
    ("Quarterly security audits are done by the external firm Nettle & Co.",
     "Who inspects our defenses every three months?"),
    ("The Postgres replica db-replica-2 lags up to 200 ms behind the primary.",
     "How far back can the read-only follower get?"),
    ("The product roadmap is reviewed with sales on the first Monday of the month.",
     "When do we go over upcoming plans with the commercial folks?"),
    ("The user has a standing desk and likes to alternate every hour.",
     "Does this person work upright or sitting?"),
    ("Error E7781 means the connection pool to Postgres is exhausted.",
     "What does it indicate when every link to the relational store is taken?"),
    ("Hannah in procurement negotiates all software licences over 5,000 euros.",
     "Who handles vendor deals for expensive tools?"),
    ("The user's favourite restaurant is Osteria Bella on Canal Street.",
     "Where does this person love to eat out?"),
    ("The status page status.orbit.dev is updated by the on-call engineer during outages.",
     "Where do customers check whether the service is down?"),
    ("Interviews for backend roles include a 90-minute pairing exercise.",
     "What does the hiring process for server-side engineers involve?"),
    ("The ML feature store is Feast, backed by Redis for online lookups.",
     "Which system serves precomputed model inputs in real time?"),
    ("The user's bedtime is 22:30 and they want no notifications after that.",
     "When should I stop pinging this person at night?"),
    ("The docs are built with MkDocs Material and deployed to GitHub Pages.",
     "What generates and hosts our documentation website?"),
    ("The cleaning crew comes on Tuesday and Thursday evenings, so desks must be cleared.",
     "Which nights do janitors visit the office?"),
]  # fmt: skip

#: Memories no hard query targets, each sharing words with some of the queries (grouped by
#: the query they aim at), so keyword search ranks them above the targets.
HARD_DISTRACTORS: list[str] = [
    # payment records, relational engine
    "The payment page records a click event for every abandoned cart.",
    "The search engine team holds its planning session on Wednesdays.",
    "Medical records of the user's dog are kept at the vet in Utrecht.",
    # European in-memory store fills up
    "The European sales office fills open roles through a recruiting agency.",
    "The user's memory foam pillow came from the store on Baker Street.",
    "Nothing happens on public holidays: the building is closed.",
    # iPhone application ships
    "The receptionist signs for courier parcels at the front desk.",
    "Job applications are screened by the recruiter within a week.",
    "The user's iPhone is due for a battery replacement.",
    # hot drink after lunch
    "Hot desks on the third floor must be booked a day ahead.",
    "Lunch-and-learn talks happen every second Thursday.",
    "The vending machine drink prices went up by ten cents.",
    # shipping code over the holidays
    "Free shipping applies to orders above 50 euros in the web shop.",
    "The user's parents live near the coast and host the family holidays.",
    "Port 25 is blocked on all servers to stop spam.",
    # processor, bank, purchase
    "The bank holiday in May moves the payroll run forward.",
    "Each developer laptop has an Intel processor and 32 GB of RAM.",
    "Purchase orders over 1,000 euros need a second signature.",
    # orchestrator, data pipelines, midnight
    "The data protection officer is Lars from legal.",
    "The new project kicks off next month with a two-day workshop.",
    "Pipelines in GitLab show a red badge when a job fails.",
    # Polish colleague hours
    "The user wants to polish the conference talk before Friday.",
    "Each new colleague gets a welcome box on the first day.",
    "Reach out to facilities about a broken chair.",
    # slow requests per route
    "The bus route to the office changed after the roadworks.",
    "Feature requests from customers are logged in Productboard.",
    "The user likes slow mornings with a long breakfast on Sundays.",
    # HTTPS keys refreshed
    "Spare office keys are kept by the receptionist.",
    "The wiki homepage was refreshed with a new layout last week.",
    "Plan ahead: parking permits take ten days to arrive.",
    # earliest hour, calls
    "The vendor accepts calls only through its paid support line.",
    "The earliest flight to Madrid leaves at 6:10.",
    "Sales calls are logged in the CRM after each demo.",
    # CDN, images, scripts, website
    "Deployment scripts live in the ops repository under bin/.",
    "The florist delivers fresh flowers to reception on Mondays.",
    "The website footer still shows last year's copyright notice.",
    # expert, grammar code
    "The user's grammar checker is set to British English.",
    "A security expert reviews the threat model once a year.",
    "Code coverage must stay above 80 percent on the core package.",
    # teeth checked
    "The fire extinguishers are checked every six months.",
    "The user's son lost his first front teeth this spring.",
    # group reflects on the last iteration
    "The book club group meets on the last Thursday of each month.",
    "The pricing page does not reflect the new discount yet.",
    "The user went hiking in the Alps last summer.",
    # file, live environment options, legacy app
    "The legacy fax number is still printed on old letterheads.",
    "Stock options vest over four years with a one-year cliff.",
    "Big files should go to the shared drive, not by email.",
    # employees paid each month
    "Employees may bring dogs to the office on Fridays.",
    # visual accessibility, graphs
    "Accessibility audits of the web app are run with axe every release.",
    "Visual regression tests compare screenshots in Chromatic.",
    "Dependency graphs of the monorepo are generated nightly.",
    # automated messages to customers' inboxes
    "Automated tests for the checkout run on every pull request.",
    "Messages in the #random channel are deleted after ninety days.",
    # hardware, machine learning, weekends
    "The coffee machine on floor two is descaled on Saturdays.",
    "The learning budget is 1,000 euros per employee per year.",
    "Old hardware is donated to a local school every spring.",
    # outage review document published
    "A power outage last winter shut the Delft office for three hours.",
    "Performance review cycles close at the end of June.",
    "Release notes are published on the blog after each version.",
    # significant other, living
    "The living room lamp is on a smart plug that turns off at midnight.",
    "A significant share of traffic comes from mobile browsers.",
    # third-party library versions frozen
    "The user returns library books on the third Saturday of the month.",
    "Frozen food in the office freezer is thrown out on Fridays.",
    "The weekly newsletter for investors goes out on Thursday.",
    # clients angry about the product
    "The product launch party is planned for late October.",
    "Clients in the EU are charged in euros, everyone else in dollars.",
    "The door handle of meeting room 4 is broken.",
    # pictures of kids copied offsite
    "The team offsite this year is in Porto.",
    "The kids' summer camp runs from July 8 to July 19.",
    "Profile pictures must be square and under 1 MB.",
    # JVM release, memory, backend apps
    "Backend engineers rotate through support one week per quarter.",
    "The release train leaves every two weeks on Wednesday.",
    # nickname
    "The user wants a reminder to water the tomatoes.",
    "The nickname 'the bunker' refers to the basement server room.",
    # urgent patch, version control
    "Urgent tickets get a phone call, not just an email.",
    "The vegetable patch in the garden needs weeding in June.",
    "Access control lists for the file server are reviewed yearly.",
    # purchase before the hour, Dutch depot
    "Dutch lessons for expats are offered on Tuesday evenings.",
    "The bus depot near the office is being turned into flats.",
    # spend, lodging, attendee, company trip
    "Every attendee of the workshop receives a printed agenda.",
    "The user's trip to Iceland was postponed to next year.",
    "The company car is a grey Skoda parked in spot 12.",
    # footwear fits, jogging
    "The new monitor arm fits all desks in the east wing.",
    "A jogging path runs along the river behind the office.",
    # login credential valid, renewed
    "The guest Wi-Fi login page asks for an email address.",
    "Passports must be valid for six months for the Thailand holiday.",
    "The office lease was renewed until 2029.",
    # testers, pre-release site
    "The construction site next door makes noise until 18:00.",
    "Beta testers receive a free year of the premium plan.",
    # right-to-left language support, manuals
    "Car manuals for the company fleet are in the glovebox.",
    "The left monitor on the user's desk flickers now and then.",
    "Support for Python 3.9 ends with the next major release.",
    # carrier, traveler, booking trips
    "Meeting room booking is done through the Outlook calendar.",
    "The parcel carrier for EU orders is DHL.",
    "The user owes Jonas a favour for helping move the sofa.",
    # format, output, linked across systems
    "The date format in reports is ISO 8601 everywhere.",
    "Audio output in the boardroom needs the blue cable.",
    "Follow the company account on Mastodon for job posts.",
    # directors gather
    "The film club gathers on the roof terrace on Friday nights.",
    "Directors' parking spots are at the front entrance.",
    "Rainwater is gathered in a tank for the garden.",
    # prove desktop installers authentic
    "The desktop wallpaper on loaner laptops shows the helpdesk number.",
    "Installers for the VPN client are on the intranet downloads page.",
    # long-distance race, preparing
    "A race condition in the scheduler caused duplicate emails last month.",
    "The user is preparing a speech for a cousin's wedding.",
    "Long-distance calls from the desk phones are blocked.",
    # broker, events, microservices
    "The user's mortgage broker is called Pieter.",
    "Company events are announced in the #social channel.",
    "Museum passes for staff are available at reception.",
    # weekly one-on-one with the boss
    "The boss of the startup next door offered to share the kitchen.",
    "Only one person at a time may use the phone booth.",
    # warned, storage, running out, data servers
    "Storage closets on each floor hold spare chairs.",
    "The user was warned by the landlord about noise after 22:00.",
    "The running club meets at 7:00 near the station.",
    # novels, enjoy
    "The user would enjoy a day at the spa as a birthday treat.",
    "Graphic novels for the office library are chosen by vote.",
    # external interface reference produced
    "External contractors must sign an NDA before onboarding.",
    "Reference letters for departing staff are written by their manager.",
    "The podcast is produced in-house by the marketing team.",
    # container, Pacific coast, environment
    "Shipping containers at the port are tracked by the logistics partner.",
    "The Pacific sales team works from the Sydney office.",
    "The user's holiday home is on the coast of Brittany.",
    # bills, clients, contain
    "Utility bills for the office are paid by direct debit.",
    "Glass containers go in the green recycling bin.",
    # kid, pool
    "The car pool to the client site leaves at 8:15.",
    "Go modules are vendored in the tools repository.",
    "The hotel pool in Porto is open until 22:00.",
    # reviewers sign off, pull request lands
    "Conference talk proposals are scored by three reviewers.",
    "The plane lands in Oslo at 21:40 on Friday.",
    # budget limit, cloud analytics warehouse
    "The speed limit in the company car park is 10 km/h.",
    "Analytics events from the mobile app are sampled at 10 percent.",
    "The budget for team books is approved by the office manager.",
    # administrator privileges, old email machine
    "The old office in Leiden closed in 2021.",
    "Email signatures must include the company logo.",
    # add pictograms to messages
    "Add new vendors to the procurement sheet before paying them.",
    "The user's little brother starts university in the autumn.",
    # nobody could log in, spring incident
    "Every incident gets its own Slack channel named after the date.",
    "Spring cleaning of the shared drive happens in April.",
    "The visitor log at reception must be signed on arrival.",
    # language, UI toolkit, Google phone client
    "Google Workspace accounts are created by IT on the first day.",
    "The phone booth on the fourth floor has a broken fan.",
    "Power strips under the desks are checked by facilities each year.",
    # company-wide gathering, watch later
    "The user's watch strap needs replacing.",
    # travel document stored at home
    "Travel insurance is covered by the company credit card.",
    "The home office allowance is 500 euros once per employee.",
    # maximum upload size, endpoint
    "Maximum occupancy of the large meeting room is twelve people.",
    "Team size is capped at eight engineers per squad.",
    "The health endpoint /healthz is polled every ten seconds.",
    # infrastructure code, connecting clouds
    "The infrastructure budget for next year is drafted in November.",
    "The user looks after the neighbour's cat during their trips.",
    # unused holidays, roll into next year
    "Unused monitors are stored in the basement.",
    # music helps focus
    "Focus time blocks on Wednesday mornings are meeting-free.",
    "The music in the lobby is licensed through a streaming service.",
    # phone application stopped
    "The office phone number forwards to the receptionist's mobile.",
    "Construction stopped for two weeks because of a permit issue.",
    # lookup catalog regenerated
    "The product catalog has about 12,000 SKUs.",
    "DNS lookup failures spiked during the router firmware update.",
    # extra support, subscription tier clients
    "The user's streaming subscription renews on the 3rd.",
    "Extra chairs for events are in the storage room.",
    "Free tier accounts are deleted after a year of inactivity.",
    # machine, operating system
    "The espresso machine needs descaling every month.",
    "Operating costs for the office rose 8 percent this year.",
    # signs off articles, company website
    "Articles of association are kept by the company secretary.",
    "The website contact form sends messages to sales.",
    # passwords and API keys for live systems
    "The API changelog is published in the developer portal.",
    "Guest passwords for the Wi-Fi change every Monday.",
    # in-flight requests finish, container stopped
    "The user's flight back from Oslo lands on Sunday night.",
    "Finish the onboarding checklist before the end of the first week.",
    # lodging preferences when traveling
    "Preferences for the annual party menu are collected in a form.",
    "Lodging for the Vienna conference was booked by the organisers.",
    # inspects defenses, three months
    "The elevator is inspected by a certified firm each year.",
    "Three months of probation apply to every new hire.",
    # far back, read-only follower
    "The user's back hurts after long drives, so breaks help.",
    "Read the security handbook before your first on-call shift.",
    "Our follower count on Mastodon passed 5,000 in May.",
    # upcoming plans, commercial folks
    "Commercial cleaning is contracted out to Spotless BV.",
    "Upcoming public holidays are listed in the HR portal.",
    "Health insurance plans are chosen during open enrolment in November.",
    # upright or sitting
    "Pet sitting for the office dog rotates among volunteers.",
    "The upright piano in the lounge was tuned in February.",
    # indicate, link, relational store taken
    "Meeting minutes must indicate who owns each action item.",
    "The invite link for the design review expires after a week.",
    # vendor deals, expensive tools
    "The user deals with stress by going for long walks.",
    "Power tools in the maker space require a safety briefing.",
    # love to eat out
    "The user would love a window box for herbs on the balcony.",
    "Staff eat together on Thursdays when the chef cooks for the office.",
    # customers check whether the service is down
    "Customers in Japan are served by the Tokyo reseller.",
    "Check the fridge labels before taking any food.",
    # hiring process, server-side engineers
    "The side entrance is locked after 19:00.",
    "Engineers get a yearly conference budget of 1,500 euros.",
    "The hiring freeze for support roles ends in April.",
    # serves precomputed model inputs in real time
    "The canteen serves soup at noon on weekdays.",
    "Real estate agents for the new office are shortlisted by Clara.",
    "The role model programme pairs juniors with senior mentors.",
    # stop pinging at night
    "The bus stop outside the office moved 200 metres east.",
    "Night trains to Vienna leave from Amsterdam Centraal at 19:30.",
    # generates and hosts documentation website
    "The solar panel on the roof generates about 40 kWh a day.",
    "The user hosts a board game evening on the first Friday of the month.",
    # janitors visit the office at night
    "A client visit from Nordwind is planned for next Tuesday.",
    "The office printer on floor three jams on thick paper.",
]

#: Queries naming an exact identifier of their target (index into HARD_PAIRS), an
#: identifier found in no other memory of any set.
HARD_LEXICAL: list[tuple[int, str]] = [
    (0, "pg-billing-01 disk"),
    (1, "what runs on cache-eu-2"),
    (5, "E4012"),
    (6, "etl-runner-3 is down"),
    (8, "api-latency dashboard"),
    (11, "orbit-assets-prod bucket"),
    (15, "settings/prod.toml"),
    (18, "SendGrid"),
    (19, "who books gpu-train-1"),
    (39, "mq-core-1"),
    (44, "k8s-west upgrade"),
    (59, "Crashlytics"),
    (64, "kv/prod secrets"),
    (68, "db-replica-2 lag"),
    (71, "E7781"),
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


def keyword_sets(texts: Iterable[str]) -> list[tuple[set[str], set[str]]]:
    """Each text's (Porter stems, five-letter prefixes) of its content words (stop words
    dropped): what :func:`shared_keywords` intersects, computed once for many texts."""
    words = [_content_words(text) for text in texts]
    stems = _stems(" ".join(ws) for ws in words)
    return [(s, {w[:5] for w in ws if len(w) >= 5}) for s, ws in zip(stems, words, strict=True)]


def shared_keywords(memory: str, query: str) -> set[str]:
    """What a query shares with its memory: Porter stems, or five-letter prefixes, of
    content words (stop words dropped). Empty for a fair paraphrase."""
    (stems_m, prefixes_m), (stems_q, prefixes_q) = keyword_sets([memory, query])
    return (stems_m & stems_q) | (prefixes_m & prefixes_q)
