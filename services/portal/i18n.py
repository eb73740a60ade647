"""The portal's words in Finnish (the default) and English: one catalogue, one function to
pick the visitor's language (choice, then Accept-Language), dates in Europe/Helsinki.

`tests/portal/test_portal_i18n.py` fails when a key used by a page or a value the services
can send has no translation in either language."""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from shared.logging import get_logger

log = get_logger(__name__)
LANGUAGES = ("fi", "en")
DEFAULT = "fi"
HELSINKI = ZoneInfo("Europe/Helsinki")
# Keys asked for but missing (the tests assert this stays empty).
MISSING: set[str] = set()

M: dict[str, tuple[str, str]] = {
    # -- frame
    "app.name": ("Asiakasrekisteri", "Customer register"),
    "app.footer": ("Henkilötietoja käsitellään tietosuojaselosteen mukaisesti.",
                   "Personal data is processed as the privacy notice says."),
    "nav.skip": ("Siirry sisältöön", "Skip to content"),
    "nav.main": ("Päävalikko", "Main menu"),
    "nav.search": ("Henkilöhaku", "Person search"),
    "nav.queues": ("Työjonot", "Work queues"),
    "nav.marketing": ("Markkinointikiellot", "Marketing check"),
    "nav.billing": ("Laskutus", "Billing"),
    "nav.signed_in_as": ("Kirjautunut:", "Signed in:"),
    "nav.sign_out": ("Kirjaudu ulos", "Sign out"),
    "lang.switch": ("In English", "Suomeksi"),
    "yes": ("kyllä", "yes"),
    "no": ("ei", "no"),
    # -- roles
    "role.register_owner": ("rekisterin vastuuhenkilö", "register owner"),
    "role.register_user": ("rekisterin käyttäjä", "register user"),
    "role.marketing": ("markkinointi", "marketing"),
    "role.billing": ("laskutus", "billing"),
    # -- landing and sign-in
    "landing.title": ("Tervetuloa", "Welcome"),
    "landing.intro": ("Asiakasrekisterin verkkopalvelu: omat tietosi ja markkinointivalintasi, tai henkilökunnan työkalut.",
                      "The customer register online: your own data and marketing choices, or the staff tools."),
    "landing.subject": ("Omat tietoni", "My data"),
    "landing.staff": ("Henkilökunnan kirjautuminen", "Staff sign-in"),
    "login.staff.title": ("Henkilökunnan kirjautuminen", "Staff sign-in"),
    "login.subject.title": ("Kirjaudu omiin tietoihisi", "Sign in to your data"),
    "login.subject.intro": ("Kirjaudu käyttäjätunnuksella ja salasanalla, jotka vain sinä tiedät.",
                            "Sign in with the username and password only you know."),
    "login.username": ("Käyttäjätunnus", "Username"),
    "login.password": ("Salasana", "Password"),
    "login.totp": ("Kertakäyttökoodi", "One-time code"),
    "login.totp_hint": ("Vain jos tunnukseesi on liitetty todennussovellus.",
                        "Only if an authenticator app is linked to your account."),
    "login.submit": ("Kirjaudu", "Sign in"),
    "login.oidc": ("Kirjaudu kertakirjautumisella", "Sign in with single sign-on"),
    "login.to_subject": ("Oletko rekisteröity? Kirjaudu omiin tietoihisi", "Are you a data subject? Sign in to your data"),
    "login.to_staff": ("Henkilökunnan kirjautuminen", "Staff sign-in"),
    "activate.title": ("Ota tunnuksesi käyttöön", "Activate your account"),
    "activate.intro": ("Saat kertakäyttöisen aktivointikoodin viestillä. Valitse salasana, jonka vain sinä tiedät.",
                       "You receive a single-use activation code by message. Choose a password only you know."),
    "activate.code": ("Aktivointikoodi", "Activation code"),
    "activate.new_password": ("Uusi salasana", "New password"),
    "activate.submit": ("Ota käyttöön", "Activate"),
    "activate.wrong": ("Koodi on väärä, vanhentunut tai jo käytetty.", "The code is wrong, expired or already used."),
    "activate.done": ("Tunnuksesi on käytössä. Kirjaudu uudella salasanallasi.",
                      "Your account is active. Sign in with your new password."),
    "activate.link": ("Sait aktivointikoodin? Ota tunnuksesi käyttöön", "Got an activation code? Activate your account"),
    "login.wrong": ("Käyttäjätunnus tai salasana on väärin.", "The username or password is wrong."),
    "login.locked": ("Tunnus on lukittu toistuvien virheellisten yritysten vuoksi. Yritä myöhemmin uudelleen.",
                     "The account is locked after repeated failed attempts. Try again later."),
    "login.totp_required": ("Anna todennussovelluksen kertakäyttökoodi.", "Enter the one-time code from your authenticator app."),
    "login.expired": ("Istuntosi päättyi. Kirjaudu uudelleen.", "Your session ended. Please sign in again."),
    "oidc.unavailable": ("Kertakirjautumispalvelu ei vastaa. Yritä myöhemmin uudelleen.",
                         "The single sign-on service is not answering. Try again later."),
    "oidc.state": ("Kirjautuminen vanheni tai keskeytyi. Aloita alusta.", "The sign-in expired or was interrupted. Start again."),
    "oidc.failed": ("Kertakirjautumisen tunnistetta ei voitu vahvistaa.", "The single sign-on token could not be verified."),
    "oidc.no_role": ("Tunnuksellesi ei ole määritelty roolia tässä rekisterissä.", "Your account has no role in this register."),
    # -- forms
    "form.required": ("Pakollinen tieto puuttuu.", "This is required."),
    "form.required_mark": ("pakollinen", "required"),
    "form.date": ("Anna päivämäärä muodossa vvvv-kk-pp.", "Enter a date as yyyy-mm-dd."),
    "form.uuid": ("Anna tunniste muodossa xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.",
                  "Enter an identifier as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx."),
    "form.choose": ("Valitse yksi vaihtoehdoista.", "Choose one of the options."),
    "form.invalid": ("Tieto ei kelpaa", "Not valid"),
    "form.fix_errors": ("Korjaa merkityt kohdat.", "Please correct the marked fields."),
    "form.one_per_line": ("Yksi riville.", "One per line."),
    "form.save": ("Tallenna", "Save"),
    # -- errors
    "error.home": ("Etusivulle", "To the front page"),
    "error.forbidden.title": ("Ei käyttöoikeutta", "No access"),
    "error.forbidden.role": ("Roolillasi ei ole oikeutta tähän toimintoon.", "Your role does not have the right to do this."),
    "error.csrf": ("Lomakkeen suojaustunniste puuttui tai oli vanhentunut. Lataa sivu uudelleen ja yritä uudelleen.",
                   "The form's protection token was missing or stale. Reload the page and try again."),
    "error.not_found.title": ("Ei löytynyt", "Not found"),
    "error.not_found.text": ("Hakemaasi sivua tai tietoa ei löytynyt.", "The page or record you asked for was not found."),
    "error.not_found.person": ("Henkilöä ei löytynyt.", "No such person was found."),
    "error.unavailable.title": ("Palvelu ei vastaa", "Service unavailable"),
    "error.unavailable.text": ("Taustapalvelu ei juuri nyt vastaa. Yritä hetken kuluttua uudelleen.",
                               "A service behind this page is not answering. Try again in a moment."),
    "error.failed.title": ("Jokin meni vikaan", "Something went wrong"),
    "error.failed.text": ("Pyyntöä ei voitu käsitellä.", "The request could not be handled."),
    "conflict": ("Tila on muuttunut: tätä ei voi enää tehdä.", "The state has changed: this can no longer be done."),
    "validation_error": ("Tieto ei kelpaa.", "Not valid."),
    # -- search and person
    "search.title": ("Henkilöhaku", "Person search"),
    "search.name": ("Nimi", "Name"),
    "search.email": ("Sähköposti", "Email"),
    "search.phone": ("Puhelin", "Phone"),
    "search.submit": ("Hae", "Search"),
    "search.results": ("Hakutulokset", "Results"),
    "search.none": ("Hakuehdoilla ei löytynyt henkilöitä.", "No persons match the search."),
    "person.state": ("Elinkaaren tila", "Lifecycle state"),
    "person.state_changed": ("tila muuttui", "state changed"),
    "person.legal_basis": ("Käsittelyperuste", "Legal basis"),
    "person.fields": ("Tiedot ja niiden lähteet", "Data and where it came from"),
    "person.field": ("Tieto", "Field"),
    "person.value": ("Arvo", "Value"),
    "person.source": ("Lähde", "Source"),
    "person.purposes": ("Käsittelyn tarkoitukset", "Purposes of processing"),
    "person.organisation": ("Organisaatio", "Organisation"),
    "person.relationships": ("Asiakassuhteet ja toimeksiannot", "Relationships and assignments"),
    "person.kind": ("Laji", "Kind"),
    "person.started": ("Alkoi", "Started"),
    "person.ended": ("Päättyi", "Ended"),
    "person.ongoing": ("jatkuu", "ongoing"),
    "person.assignment": ("Toimeksianto", "Assignment"),
    "person.none": ("Ei merkintöjä.", "None."),
    "person.consents": ("Markkinointiluvat ja -kiellot", "Marketing permissions and bans"),
    "person.consents_unknown": ("Suostumuspalvelulla ei ole tietoja tästä henkilöstä.", "The consent service holds nothing on this person."),
    "person.rectifications": ("Oikaisupyynnöt", "Rectification requests"),
    "person.retention": ("Passivointi ja hävittäminen", "Passivation and disposition"),
    "person.holds": ("Säilytysvelvoitteet (legal hold)", "Legal holds"),
    "person.access_requests": ("Tarkastuspyynnöt", "Access requests"),
    "person.audit": ("Lokitiedot: kuka käsitteli tietoja", "Audit trail: who processed the data"),
    "field.name": ("Nimi", "Name"),
    "field.first_name": ("Etunimi", "First name"),
    "field.last_name": ("Sukunimi", "Last name"),
    "field.title": ("Tehtävänimike", "Job title"),
    "field.expertise": ("Osaaminen", "Expertise"),
    "field.emails": ("Sähköpostiosoitteet", "Email addresses"),
    "field.phones": ("Puhelinnumerot", "Phone numbers"),
    "field.other_contact": ("Muut yhteystiedot", "Other contact details"),
    "field.organisation_id": ("Organisaation tunniste", "Organisation id"),
    "field.username": ("Käyttäjätunnus", "Username"),
    "field.nickname": ("Kutsumanimi", "Nickname"),
    "field.reason": ("Perustelu", "Reason"),
    "state.prospect": ("mahdollinen asiakas", "prospect"),
    "state.active": ("aktiivinen", "active"),
    "state.ended": ("päättynyt", "ended"),
    "state.passive": ("passivoitu", "passivated"),
    "state.erased": ("poistettu", "erased"),
    "state.marketing": ("markkinointirekisterissä", "in the marketing register"),
    "basis.customer_relationship": ("asiakassuhde", "customer relationship"),
    "basis.legitimate_connection": ("muu asiallinen yhteys", "other legitimate connection"),
    "basis.consent": ("suostumus", "consent"),
    "basis.assignment": ("toimeksianto", "assignment"),
    "ppurpose.customer_relationship": ("asiakassuhteen hoito ja markkinointi (P1)", "customer relationship and marketing (P1)"),
    "ppurpose.assignments": ("toimeksiantojen hoito (P2)", "carrying out assignments (P2)"),
    "ppurpose.usage_billing": ("käytön raportointi ja laskutus (P3)", "usage reporting and billing (P3)"),
    "relationship.customer": ("Asiakassuhde", "Customer relationship"),
    "relationship.prospect": ("Asiallinen yhteys", "Legitimate connection"),
    "given_by.principal": ("päämies", "principal"),
    "given_by.partner": ("yhteistyökumppani", "partner"),
    "given_by.customer": ("asiakas", "customer"),
    "source.person_meeting": ("henkilöltä itseltään tapaamisessa", "the person, at a meeting"),
    "source.person_phone": ("henkilöltä itseltään puhelimessa", "the person, by phone"),
    "source.person_web": ("henkilöltä itseltään verkossa", "the person, on the web"),
    "source.person_email": ("henkilöltä itseltään sähköpostilla", "the person, by email"),
    "source.self_service": ("henkilö itse omissa tiedoissaan", "the person, in self-service"),
    "source.service_event": ("palvelun käyttö tai tapahtuma", "service use or a transaction"),
    "source.published_source": ("organisaation tai henkilön julkaisema lähde", "a source the organisation or person published"),
    "source.b2b_register": ("B2B-markkinointirekisteri", "a B2B marketing register"),
    "source.public_register": ("julkinen rekisteri", "a public register"),
    "source.private_register": ("yksityinen rekisteri", "a private register"),
    "source.staff": ("henkilökunnan kirjaama", "recorded by staff"),
    "org.business_id": ("Y-tunnus", "Business id (y-tunnus)"),
    "org.address": ("Osoite", "Address"),
    "org.phone": ("Puhelin", "Phone"),
    "org.persons": ("Yhteyshenkilöt", "Contact persons"),
    # -- consent
    "consent.grid.caption": ("Markkinoinnin tarkoitus ja kanava", "Marketing purpose and channel"),
    "consent.purpose": ("Tarkoitus", "Purpose"),
    "consent.channel": ("Kanava", "Channel"),
    "consent.status.granted": ("lupa", "permitted"),
    "consent.status.banned": ("kielto", "banned"),
    "consent.status.none": ("ei valintaa", "no choice"),
    "consent.choice.none": ("Ei valintaa", "No choice"),
    "consent.choice.grant": ("Sallin", "I allow"),
    "consent.choice.ban": ("Kiellän", "I ban"),
    "purpose.direct_advertising": ("Suoramainonta", "Direct advertising"),
    "purpose.distance_selling": ("Etämyynti", "Distance selling"),
    "purpose.other_direct_marketing": ("Muu suoramarkkinointi", "Other direct marketing"),
    "purpose.opinion_and_market_research": ("Mielipide- ja markkinatutkimukset", "Opinion and market research"),
    "channel.email": ("Sähköposti", "Email"),
    "channel.phone": ("Puhelin", "Phone"),
    "channel.sms": ("Tekstiviesti", "SMS"),
    "channel.post": ("Posti", "Post"),
    "reason.erased": ("henkilö on poistettu", "the person was erased"),
    "reason.banned": ("kielletty", "banned"),
    "reason.suppression_list": ("kieltolistalla", "on the suppression list"),
    "reason.granted": ("lupa annettu", "permitted"),
    "reason.no_ban": ("ei kieltoa", "no ban"),
    "reason.invalid_contact_point": ("virheellinen yhteystieto", "not a valid contact point"),
    # -- retention and holds
    "retention.action": ("Toimenpide", "Action"),
    "retention.deadline": ("Määräaika", "Deadline"),
    "retention.basis": ("Peruste", "Basis"),
    "retention.policy": ("säännöt", "policy"),
    "retention.completed": ("Valmis", "Completed"),
    "retention.no_evidence": ("Passivointia tai hävittämistä ei ole vielä käsketty.", "No passivation or disposition commanded yet."),
    "action.passivate": ("passivointi", "passivation"),
    "action.dispose": ("hävittäminen tai siirto markkinointirekisteriin", "erasure or transfer to the marketing register"),
    "action.erase": ("poistaminen", "erasure"),
    "action.transfer_to_marketing": ("siirto markkinointirekisteriin", "transfer to the marketing register"),
    "hold.none": ("Ei voimassa olevia säilytysvelvoitteita.", "No legal hold in force."),
    "hold.place": ("Aseta säilytysvelvoite", "Place a legal hold"),
    "hold.reason": ("Peruste", "Reason"),
    "hold.expires_on": ("Voimassa päivään", "In force until"),
    "hold.until": ("voimassa", "until"),
    "hold.submit": ("Aseta", "Place hold"),
    "hold.placed": ("Säilytysvelvoite asetettu: henkilön tietoja ei hävitetä ennen sen päättymistä.",
                    "Legal hold placed: the person's data is not disposed of before it ends."),
    "hold.release": ("Pura", "Release"),
    # -- access requests
    "access.title": ("Tarkastuspyyntö", "Access request"),
    "access.status": ("Tila", "Status"),
    "access.status.awaiting_identity": ("odottaa henkilöllisyyden todentamista", "awaiting identity verification"),
    "access.status.awaiting_decision": ("odottaa päätöstä", "awaiting a decision"),
    "access.status.collecting": ("tietoja kootaan", "collecting the data"),
    "access.status.fulfilled": ("valmis", "ready"),
    "access.status.refused": ("hylätty", "refused"),
    "access.channel": ("Tapa", "Channel"),
    "access.channel.signed_letter": ("allekirjoitettu kirje", "signed letter"),
    "access.channel.in_person": ("henkilökohtaisesti toimistolla", "in person at the office"),
    "access.channel.self_service": ("omissa tiedoissa kirjautuneena", "signed in to self-service"),
    "access.chargeable": ("maksullinen", "chargeable"),
    "access.verified_by": ("Henkilöllisyyden todensi", "Identity verified by"),
    "access.decision": ("Päätös", "Decision"),
    "access.decision.charge": ("peritään maksu", "charge the fee"),
    "access.decision.waive": ("maksutta", "waive the fee"),
    "access.decision.refuse": ("hylätään", "refuse"),
    "access.reason": ("Perustelu", "Reason"),
    "access.answer": ("Vastaa pyyntöön", "Answer the request"),
    "access.answer_intro": ("Toinen pyyntö kahdentoista kuukauden sisällä voi olla maksullinen.",
                            "A second request within twelve months may be charged for."),
    "access.answer_submit": ("Tallenna päätös", "Record the decision"),
    "access.open_person": ("Henkilön tiedot", "The person's page"),
    "access.missing": ("Odotetaan palveluilta", "Waiting for services"),
    "access.report_html": ("Raportti (HTML)", "Report (HTML)"),
    "access.report_json": ("Raportti (JSON)", "Report (JSON)"),
    "access.not_ready": ("Raportti ei ole vielä valmis.", "The report is not ready yet."),
    "access.record": ("Kirjaa tarkastuspyyntö", "Record an access request"),
    "access.verification": ("Miten henkilöllisyys todennettiin", "How the identity was verified"),
    "access.signed_letter": ("Allekirjoitettu kirjallinen pyyntö", "A signed written request"),
    "access.in_person": ("Henkilökohtaisesti toimistolla", "In person at the office"),
    "access.notes": ("Huomautukset", "Notes"),
    "access.notes_hint": ("Esimerkiksi asiakirjan laji, ei sen numeroa.", "For example the document type, not its number."),
    "access.record_submit": ("Kirjaa pyyntö", "Record the request"),
    # -- queues
    "queues.title": ("Työjonot", "Work queues"),
    "queues.summary": ("Seuraavan {days} päivän aikana erääntyy {due}, säilytysvelvoitteen alaisena {held}, myöhässä {overdue}.",
                       "Due in the next {days} days: {due}; held: {held}; overdue: {overdue}."),
    "queues.awaiting": ("Tarkastuspyynnöt: odottavat päätöstä", "Access requests awaiting a decision"),
    "queues.collecting": ("Tarkastuspyynnöt: tietoja kootaan", "Access requests being collected"),
    "queues.rectifications": ("Ratkaistavat oikaisupyynnöt", "Rectifications to decide"),
    "queues.dispositions_due": ("Erääntyvät passivoinnit ja hävittämiset", "Passivations and dispositions due"),
    "queues.overdue": ("Myöhässä olevat", "Overdue"),
    "queues.held": ("Säilytysvelvoitteet", "Legal holds"),
    "queues.received": ("Vastaanotettu", "Received"),
    "queues.due": ("Määräpäivä", "Due"),
    "queues.days_left": ("Päiviä jäljellä", "Days left"),
    "queues.open": ("Avaa", "Open"),
    "queues.open_request": ("Avaa pyyntö", "Open the request"),
    "queues.open_rectification": ("Avaa oikaisupyyntö", "Open the rectification"),
    "queues.person": ("Henkilö", "Person"),
    "queues.commanded": ("Käsketty", "Commanded"),
    "queues.missing": ("Vahvistamatta", "Not confirmed by"),
    "queues.empty": ("Jono on tyhjä.", "The queue is empty."),
    # -- lists with further pages (issue 20)
    "list.more": ("Lisää on: tässä ensimmäiset {n}.", "There are more: the first {n} are shown."),
    "list.more_newest": ("Vanhempia on: tässä uusimmat {n}.", "There are older ones: the newest {n} are shown."),
    "list.next_page": ("Seuraava sivu", "Next page"),
    # -- rectifications
    "rect.title": ("Oikaisupyyntö", "Rectification request"),
    "rect.status.pending": ("odottaa ratkaisua", "pending"),
    "rect.status.approved": ("hyväksytty", "approved"),
    "rect.status.rejected": ("hylätty", "rejected"),
    "rect.requested_by": ("Pyytäjä", "Requested by"),
    "rect.reason": ("Perustelu", "Reason"),
    "rect.changes": ("Pyydetyt korjaukset", "Corrections asked for"),
    "rect.new_value": ("Uusi arvo", "New value"),
    "rect.decide": ("Ratkaise", "Decide"),
    "rect.decision": ("Ratkaisu", "Decision"),
    "rect.approve": ("Hyväksy ja korjaa", "Approve and correct"),
    "rect.reject": ("Hylkää", "Reject"),
    "rect.decision_reason": ("Perustelu", "Reason"),
    "rect.decide_submit": ("Tallenna ratkaisu", "Record the decision"),
    "rect.decided_by": ("Ratkaisija", "Decided by"),
    "rectification.nothing": ("Muuta ainakin yhtä tietoa.", "Change at least one field."),
    # -- marketing check
    "marketing.title": ("Markkinointikieltojen tarkistus", "Marketing consent check"),
    "marketing.intro": ("Lataa kampanjan osoitteisto CSV-tiedostona (sähköpostit ja puhelinnumerot); saat jokaiselle rivillesi vastauksen.",
                        "Upload a campaign list as CSV (emails and phones); every line gets an answer."),
    "marketing.file": ("CSV-tiedosto", "CSV file"),
    "marketing.file_hint": ("Otsikkorivi email/sähköposti ja phone/puhelin, tai pelkät osoitteet.",
                            "A header row email and phone, or just the addresses."),
    "marketing.show": ("Näytä tulokset", "Show results"),
    "marketing.download": ("Lataa tulokset CSV:nä", "Download results as CSV"),
    "marketing.results": ("Tulokset", "Results"),
    "marketing.summary": ("Tarkistettu {checked}, joista kiellettyjä {denied}.", "{checked} checked, {denied} denied."),
    "marketing.line": ("Rivi", "Line"),
    "marketing.kind": ("Laji", "Kind"),
    "marketing.kind.email": ("sähköposti", "email"),
    "marketing.kind.phone": ("puhelin", "phone"),
    "marketing.value": ("Yhteystieto", "Contact point"),
    "marketing.allowed": ("Saa markkinoida", "May be marketed to"),
    "marketing.reason": ("Syy", "Reason"),
    "marketing.csv_empty": ("Valitse CSV-tiedosto.", "Choose a CSV file."),
    "marketing.csv_encoding": ("Tiedoston merkistöä ei tunnistettu (käytä UTF-8:aa).", "The file's encoding was not recognised (use UTF-8)."),
    "marketing.csv_too_large": ("Tiedosto on liian suuri (enintään 10 Mt).", "The file is too large (at most 10 MB)."),
    "marketing.csv_no_contact_points": ("Tiedostosta ei löytynyt sähköposteja eikä puhelinnumeroita.", "The file has no emails or phone numbers."),
    "marketing.too_many": ("Tiedostossa on liian monta yhteystietoa (enintään 100 000).", "The file has too many contact points (at most 100,000)."),
    "marketing.change_refused": ("Muutosta ei voitu tallentaa.", "The change could not be saved."),
    # -- billing
    "billing.title": ("Laskutus", "Billing"),
    "billing.customer_id": ("Asiakas (tunniste)", "Customer (id)"),
    "billing.customer_hint": ("Asiakasorganisaation tunniste.", "The customer organisation's id."),
    "billing.period": ("Kausi", "Period"),
    "billing.period_hint": ("Muodossa vvvv-kk.", "As yyyy-mm."),
    "billing.show": ("Näytä", "Show"),
    "billing.usage": ("Käyttöraportti", "Usage report"),
    "billing.usage_csv": ("Lataa käyttöraportti CSV:nä", "Download the usage report as CSV"),
    "billing.meter": ("Mittari", "Meter"),
    "billing.dimensions": ("Erittely", "Dimensions"),
    "billing.quantity": ("Määrä", "Quantity"),
    "billing.events": ("Tapahtumia", "Events"),
    "billing.no_usage": ("Kaudella ei ole käyttöä.", "No usage in the period."),
    "billing.invoices": ("Laskut ja hyvityslaskut", "Invoices and credit notes"),
    "billing.no_invoices": ("Ei laskuja.", "No invoices."),
    "billing.kind": ("Laji", "Kind"),
    "billing.kind.invoice": ("lasku", "invoice"),
    "billing.kind.credit_note": ("hyvityslasku", "credit note"),
    "billing.net": ("Veroton", "Net"),
    "billing.vat": ("ALV", "VAT"),
    "billing.gross": ("Yhteensä", "Gross"),
    "billing.issued": ("Päivätty", "Issued"),
    # -- audit
    "audit.at": ("Aika", "When"),
    "audit.actor": ("Kuka", "Who"),
    "audit.action": ("Mitä", "What"),
    "audit.outcome": ("Tulos", "Outcome"),
    "audit.allowed": ("sallittu", "allowed"),
    "audit.denied": ("estetty", "denied"),
    "audit.locked": ("lukittu", "locked"),
    # -- the privacy portal
    "me.you": ("sinä", "you"),
    "me.nav.data": ("Omat tietoni", "My data"),
    "me.nav.edit": ("Muokkaa tietojani", "Edit my data"),
    "me.nav.marketing": ("Markkinointivalinnat", "Marketing choices"),
    "me.nav.access": ("Tarkastusoikeus", "Right of access"),
    "me.nav.rectification": ("Oikaisupyyntö", "Rectification"),
    "me.nav.password": ("Vaihda salasana", "Change password"),
    "me.done.saved": ("Muutokset tallennettu.", "Changes saved."),
    "me.done.rectification": ("Oikaisupyyntösi on vastaanotettu.", "Your rectification request was received."),
    "me.done.password": ("Salasana vaihdettu.", "Password changed."),
    "me.data.title": ("Omat tietoni", "My data"),
    "me.data.intro": ("Nämä tiedot sinusta on tallennettu, ja mistä kukin tieto on saatu.",
                      "This is what is stored about you, and where each item came from."),
    "me.data.source": ("Mistä saatu", "Where it came from"),
    "me.edit.title": ("Muokkaa tietojani", "Edit my data"),
    "me.marketing.title": ("Markkinointivalintani", "My marketing choices"),
    "me.marketing.intro": ("Voit kieltää tai sallia tietojesi käytön kuhunkin markkinoinnin tarkoitukseen kanavittain. Kielto tulee voimaan heti.",
                           "You can ban or allow the use of your data for each marketing purpose, per channel. A ban takes effect at once."),
    "me.marketing.notice": ("Valintasi tallennetaan tietosuojaselosteen version {version} mukaisina.",
                            "Your choices are recorded under version {version} of the privacy notice."),
    "me.access.title": ("Tarkastusoikeus", "Right of access"),
    "me.access.intro": ("Voit pyytää koosteen kaikista sinusta tallennetuista tiedoista kaikissa järjestelmissä. Yksi pyyntö vuodessa on maksuton.",
                        "You can ask for a report of everything stored about you in every system. One request a year is free of charge."),
    "me.access.request": ("Pyydä tietoni", "Request my data"),
    "me.access.mine": ("Pyyntöni", "My requests"),
    "me.access.report": ("Raportti", "Report"),
    "me.access.wait": ("Odota hetki ja lataa sivu uudelleen.", "Wait a moment and reload the page."),
    "me.rect.title": ("Pyydä tietojen oikaisua", "Ask for a correction"),
    "me.rect.intro": ("Kirjoita oikeat tiedot ja perustele pyyntö; rekisterin vastuuhenkilö ratkaisee sen.",
                      "Enter the correct data and say why; the register owner decides the request."),
    "me.rect.reason": ("Perustelu", "Reason"),
    "me.rect.submit": ("Lähetä oikaisupyyntö", "Send the request"),
    "me.rect.mine": ("Oikaisupyyntösi ja niiden ratkaisut", "Your rectification requests and their outcome"),
    "me.rect.follow": ("Oikaisupyyntösi ja niiden ratkaisut", "Your rectification requests and their outcome"),
    "me.rect.none": ("Et ole lähettänyt oikaisupyyntöjä.", "You have not sent any rectification request."),
    "me.rect.unknown": ("Oikaisupyyntöjesi tilaa ei juuri nyt saatu. Yritä myöhemmin uudelleen.",
                        "The state of your rectification requests could not be read just now. Try again later."),
    "me.rect.asked_on": ("Pyydetty", "Asked on"),
    "me.rect.fields": ("Tiedot", "Fields"),
    "me.rect.status": ("Tila", "Status"),
    "me.rect.decided_on": ("Ratkaistu", "Decided on"),
    "me.rect.decision": ("Ratkaisun perustelu", "Reason for the decision"),
    "me.retention.title": ("Kuinka kauan tietojasi säilytetään", "How long your data is kept"),
    "me.retention.intro": ("Tietosi passivoidaan, kun asiakkuutesi ja toimeksiantosi ovat päättyneet, ja hävitetään "
                           "tai siirretään markkinointirekisteriin alla näkyvänä päivänä.",
                           "Your data is made passive once your customer relationship and assignments have ended, "
                           "and erased or moved to the marketing register on the date shown below."),
    # -- visible retention (issue 19, SPEC §10)
    "rview.state": ("Säilytyksen tila", "Retention state"),
    "rview.passivation_due": ("Passivointi", "Passivation"),
    "rview.disposition_due": ("Hävittäminen tai siirto markkinointirekisteriin", "Erasure or move to the marketing register"),
    "rview.no_date": ("ei määräaikaa (asiakkuus tai toimeksianto jatkuu)", "no date (a relationship or assignment continues)"),
    "rview.passivated": ("tehty: tiedot ovat passiivisia", "done: the data is passive"),
    "rview.disposing": ("käynnissä", "under way"),
    "rview.rule": ("Sääntö", "Rule"),
    "rview.basis": ("Peruste", "Basis"),
    "rview.holds": ("Voimassa olevat säilytysvelvoitteet", "Legal holds in force"),
    "rview.blocked": ("Hävittäminen on estetty: säilytysvelvoite on voimassa.",
                      "The disposition is blocked: a legal hold is in force."),
    "rview.blocked_own": ("Tietojasi ei hävitetä ennen kuin lakisääteinen säilytysvelvoite päättyy.",
                          "Your data is not erased before a legal obligation to keep it ends."),
    "rview.overdue_since": ("Myöhässä {day} alkaen: kaikki palvelut eivät ole vahvistaneet toimenpidettä.",
                            "Overdue since {day}: not every service has confirmed the action."),
    "rview.unknown": ("Säilytystietoja ei ole saatavilla.", "No retention information is available."),
    "rstate.prospect": ("mahdollinen asiakas", "prospect"),
    "rstate.active": ("aktiivinen", "active"),
    "rstate.ended": ("päättynyt", "ended"),
    "rstate.passive": ("passivoitu", "passive"),
    "rstate.disposing": ("hävitettävänä", "being disposed of"),
    "rstate.erased": ("poistettu", "erased"),
    "rstate.marketing": ("markkinointirekisterissä", "in the marketing register"),
    "retention.evidence": ("Käskyt ja vahvistukset", "Commands and confirmations"),
    "me.password.title": ("Vaihda salasana", "Change password"),
    "me.password.current": ("Nykyinen salasana", "Current password"),
    "me.password.new": ("Uusi salasana", "New password"),
    "me.password.again": ("Uusi salasana uudelleen", "New password again"),
    "me.password.hint": ("Vähintään 12 merkkiä.", "At least 12 characters."),
    "me.password.submit": ("Vaihda salasana", "Change password"),
    "password.too_short": ("Salasanassa on oltava vähintään 12 merkkiä.", "The password must have at least 12 characters."),
    "password.mismatch": ("Salasanat eivät täsmää.", "The passwords do not match."),
}

KEY_PATTERN = re.compile(r"^[a-z_]+(\.[a-z_]+)*$")


def negotiate(choice: str | None, accept_language: str | None) -> str:
    """The chosen language, else the best of Accept-Language, else Finnish."""
    if choice in LANGUAGES:
        return choice
    ranked: list[tuple[float, str]] = []
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in LANGUAGES and q > 0:
            ranked.append((q, base))
    return max(ranked, key=lambda r: r[0])[1] if ranked else DEFAULT


def translate(lang: str, key: str, **values: Any) -> str:
    entry = M.get(key)
    if entry is None:
        MISSING.add(key)
        log.warning("translation_missing", key=key)
        return key
    text = entry[LANGUAGES.index(lang)]
    return text.format(**values) if values else text


def translator(lang: str) -> Callable[..., str]:
    def t(key: str, **values: Any) -> str:
        return translate(lang, key, **values)

    def error(value: str) -> str:
        """A field error: our own key, a service's error code, or a service's rule (English)."""
        if value in M:
            return translate(lang, value)
        if KEY_PATTERN.match(value) and "." in value:
            return translate(lang, value)  # a key of ours that is missing: recorded
        return f"{translate(lang, 'form.invalid')}: {value}"

    t.error = error  # type: ignore[attr-defined]
    return t


def _as_datetime(value: str | datetime | date | None) -> datetime | date | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return value


def format_date(value: str | datetime | date | None) -> str:
    moment = _as_datetime(value)
    if moment is None:
        return ""
    if isinstance(moment, datetime):
        moment = moment.astimezone(HELSINKI).date() if moment.tzinfo else moment.date()
    return f"{moment.day}.{moment.month}.{moment.year}"


def format_datetime(value: str | datetime | None) -> str:
    moment = _as_datetime(value)
    if not isinstance(moment, datetime):
        return format_date(moment)
    local = moment.astimezone(HELSINKI) if moment.tzinfo else moment
    return f"{local.day}.{local.month}.{local.year} {local.hour:02d}.{local.minute:02d}"
