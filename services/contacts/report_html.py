"""The access report (R12) as a readable HTML page in Finnish or English. Every value is
escaped; categories, sources and purposes are translated, anything unknown is shown as is."""
from __future__ import annotations

import json
from html import escape
from typing import Any

LABELS: dict[str, dict[str, str]] = {
    "fi": {
        "title": "Tarkastuspyyntö: rekisteröidyn tiedot",
        "intro": "Tässä ovat kaikki tiedot, joita asiakasrekisteri säilyttää sinusta, palveluittain. "
                 "Jokaisen tiedon kohdalla näkyy, mistä se on saatu ja mihin tarkoitukseen sitä käsitellään.",
        "request": "Pyyntö", "requested_at": "Vastaanotettu", "fulfilled_at": "Koottu",
        "verified": "Henkilöllisyys todennettu", "chargeable": "Maksullinen (toinen pyyntö 12 kuukauden sisällä)",
        "yes": "kyllä", "no": "ei", "service": "Palvelu", "category": "Tietoryhmä", "field": "Tieto",
        "value": "Arvo", "source": "Lähde", "purpose": "Käyttötarkoitus", "recorded_at": "Tallennettu",
        "empty": "Tässä palvelussa ei ole sinusta tietoja.",
    },
    "en": {
        "title": "Access request: the data subject's data",
        "intro": "This is all the data the customer register keeps about you, service by service. "
                 "Each item shows where it came from and the purpose it is processed for.",
        "request": "Request", "requested_at": "Received", "fulfilled_at": "Assembled",
        "verified": "Identity verified", "chargeable": "Chargeable (a further request within 12 months)",
        "yes": "yes", "no": "no", "service": "Service", "category": "Category", "field": "Item",
        "value": "Value", "source": "Source", "purpose": "Purpose", "recorded_at": "Recorded",
        "empty": "This service holds no data about you.",
    },
}

TERMS: dict[str, dict[str, str]] = {
    "fi": {
        "contacts": "Yhteystiedot", "consent": "Markkinointiluvat ja -kiellot", "retention": "Säilytysajat",
        "billing": "Laskutus",
        "basic_data": "Perustiedot", "registration": "Rekisteröintitiedot", "organisation": "Työnantaja",
        "account": "Käyttäjätunnus", "relationship": "Asiakassuhde", "assignment": "Toimeksianto",
        "service_use": "Palvelujen käyttö", "marketing": "Markkinointi", "rectification": "Oikaisupyyntö",
        "suppression_record": "Markkinointikiellon estotieto", "access_request": "Tarkastuspyyntö",
        "customer_relationship": "Asiakassuhteen hoito ja markkinointi", "assignments": "Toimeksiantojen hoito",
        "usage_billing": "Käytön raportointi ja laskutus", "suppression": "Markkinointikiellon noudattaminen",
        "person_meeting": "Rekisteröity (tapaaminen)", "person_phone": "Rekisteröity (puhelin)",
        "person_web": "Rekisteröity (verkko)", "person_email": "Rekisteröity (sähköposti)",
        "self_service": "Rekisteröity (itsepalvelu)", "service_event": "Palvelu- tai toimeksiantotapahtuma",
        "published_source": "Julkaistu lähde", "b2b_register": "B2B-markkinointirekisteri",
        "public_register": "Julkinen rekisteri", "private_register": "Yksityinen rekisteri",
        "staff": "Henkilökunta", "register": "Rekisterin oma tieto", "person": "Rekisteröity", "unknown": "ei tiedossa",
    },
    "en": {
        "contacts": "Contacts", "consent": "Marketing permissions and bans", "retention": "Retention",
        "billing": "Billing",
        "basic_data": "Basic data", "registration": "Registration data", "organisation": "Employer",
        "account": "Account", "relationship": "Customer relationship", "assignment": "Assignment",
        "service_use": "Use of services", "marketing": "Marketing", "rectification": "Rectification request",
        "suppression_record": "Marketing ban suppression record", "access_request": "Access request",
        "customer_relationship": "Customer relationship and marketing", "assignments": "Carrying out assignments",
        "usage_billing": "Usage reporting and billing", "suppression": "Honouring a marketing ban",
        "person_meeting": "You (meeting)", "person_phone": "You (phone)", "person_web": "You (web)",
        "person_email": "You (email)", "self_service": "You (self-service)",
        "service_event": "Service or assignment event", "published_source": "Published source",
        "b2b_register": "B2B marketing register", "public_register": "Public register",
        "private_register": "Private register", "staff": "Staff", "register": "Kept by the register",
        "person": "You", "unknown": "unknown",
    },
}


def _term(lang: str, value: Any) -> str:
    if value is None:
        return ""
    parts = str(value).split(",")
    return ", ".join(TERMS[lang].get(p, p) for p in parts)


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "" if value is None else str(value)


def render_html(report: dict[str, Any], lang: str) -> str:
    """A self-contained page: request facts, then one table per service."""
    t = LABELS[lang]
    e = lambda v: escape(_value(v))  # noqa: E731 - every value goes through here
    head = (f"<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{escape(t['title'])}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;width:100%;margin-bottom:2em}"
            "td,th{border:1px solid #999;padding:4px;text-align:left;vertical-align:top}</style></head><body>")
    facts = [(t["request"], report["request_id"]), (t["requested_at"], report["requested_at"]),
             (t["fulfilled_at"], report["fulfilled_at"]),
             (t["verified"], report["identity_verified"]["method"]),
             (t["chargeable"], t["yes"] if report["chargeable"] else t["no"])]
    body = [f"<h1>{escape(t['title'])}</h1><p>{escape(t['intro'])}</p><dl>"]
    body += [f"<dt>{escape(k)}</dt><dd>{e(v)}</dd>" for k, v in facts]
    body.append("</dl>")
    columns = ("category", "field", "value", "source", "purpose", "recorded_at")
    for service in report["services"]:
        items = [i for i in report["items"] if i["service"] == service]
        body.append(f"<h2>{escape(_term(lang, service))}</h2>")
        if not items:
            body.append(f"<p>{escape(t['empty'])}</p>")
            continue
        body.append("<table><tr>" + "".join(f"<th>{escape(t[c])}</th>" for c in columns) + "</tr>")
        for item in items:
            cells = [escape(_term(lang, item.get("category"))), e(item.get("field")), e(item.get("value")),
                     escape(_term(lang, item.get("source"))), escape(_term(lang, item.get("purpose"))),
                     e(item.get("recorded_at"))]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        body.append("</table>")
    return head + "".join(body) + "</body></html>"
