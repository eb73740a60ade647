"""HTTP request bodies of the contacts service. Validation normalises (E.164, lower-cased
emails, y-tunnus) and names the field and rule on failure, never the value (422, SPEC §7)."""
from __future__ import annotations

from shared.web.openapi import with_example

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.contacts import domain
from shared import privacy
from shared.messaging.events import DataSource, LegalBasis, ProcessingPurpose

Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(privacy.normalise_email)]
Phone = Annotated[str, StringConstraints(max_length=32), AfterValidator(privacy.normalise_phone)]
BusinessId = Annotated[str, StringConstraints(max_length=20), AfterValidator(domain.normalise_business_id)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Emails = Annotated[list[Email], Field(max_length=20), AfterValidator(domain.unique)]
Phones = Annotated[list[Phone], Field(max_length=20), AfterValidator(domain.unique)]
OtherContact = Annotated[dict[str, Annotated[str, StringConstraints(max_length=500)]], Field(max_length=20)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganisationIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"name": "Esimerkki Oy", "business_id": "1234567-1",
        "address": "Mannerheimintie 1, 00100 Helsinki", "phone": "+35891234567", "source": "staff"}))

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    business_id: BusinessId | None = None
    address: Text | None = None
    phone: Phone | None = None
    source: DataSource = DataSource.staff


class SelfUpdate(Body):
    """R11: what a person may change about themselves; which fields were sent is what changes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"title": "CTO", "emails": ["matti.meikalainen@example.fi"],
        "phones": ["+358401234567"]}))

    first_name: Name | None = None
    last_name: Name | None = None
    title: Name | None = None
    expertise: Text | None = None
    emails: Emails | None = None
    phones: Phones | None = None
    other_contact: OtherContact | None = None

    @field_validator("first_name", "last_name")
    @classmethod
    def _names_not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("may not be null")
        return value

    @field_validator("emails", "phones", "other_contact", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object, info) -> object:
        if value is None:
            return {} if info.field_name == "other_contact" else []
        return value

    def changes(self) -> dict:
        return {name: getattr(self, name) for name in self.model_fields_set}


class PersonFields(SelfUpdate):
    """Fields staff may change (and a rectification may correct)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"title": "CTO", "organisation_id": "7d2e9f10-4b3a-4c5d-8e6f-a1b2c3d4e5f6"}))

    organisation_id: uuid.UUID | None = None


class PersonIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"first_name": "Matti", "last_name": "Meikäläinen",
        "title": "CTO", "emails": ["matti.meikalainen@example.fi"], "phones": ["+358401234567"],
        "organisation_id": "7d2e9f10-4b3a-4c5d-8e6f-a1b2c3d4e5f6", "legal_basis": "customer_relationship",
        "purposes": ["customer_relationship"], "source": "staff"}))

    first_name: Name
    last_name: Name
    title: Name | None = None
    expertise: Text | None = None
    emails: Emails = Field(default_factory=list)
    phones: Phones = Field(default_factory=list)
    other_contact: OtherContact = Field(default_factory=dict)
    organisation_id: uuid.UUID | None = None
    legal_basis: LegalBasis
    purposes: Annotated[list[ProcessingPurpose], Field(min_length=1)]
    source: DataSource = DataSource.staff


class PersonUpdate(PersonFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"title": "CEO", "phones": ["+358401234567"], "source": "staff"}))

    source: DataSource = DataSource.staff

    def changes(self) -> dict:
        return {k: v for k, v in super().changes().items() if k != "source"}


Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=100,
                                            pattern=r"^[A-Za-z0-9._@-]+$")]
NewPassword = Annotated[str, StringConstraints(min_length=12, max_length=200)]


class AccountIn(Body):
    """Staff open an account; they never choose its password (SPEC §7): no `password` field."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"username": "matti.m", "nickname": "Matti", "identifiers": {}}))

    username: Username
    nickname: Name | None = None
    identifiers: OtherContact = Field(default_factory=dict)


class ActivateIn(Body):
    """The person sets their own password with the single-use code they received."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"username": "matti.m", "code": "K7Q2-9XPM",
        "new_password": "correct horse battery staple"}))

    username: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    new_password: NewPassword


class ReauthenticateIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"password": "correct horse battery staple"}))

    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class RelationshipIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"kind": "customer",
        "organisation_id": "7d2e9f10-4b3a-4c5d-8e6f-a1b2c3d4e5f6", "started_at": "2025-01-15T09:00:00+02:00"}))

    kind: Literal["customer", "prospect"]
    organisation_id: uuid.UUID | None = None
    started_at: AwareDatetime | None = None


class EndIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"ended_at": "2025-06-30T16:00:00+03:00"}))

    ended_at: AwareDatetime | None = None


class AssignmentIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"given_by": "customer", "title": "Audit 2025",
        "participants": ["0b6f7a1c-2d3e-4f50-8a9b-1c2d3e4f5a6b"], "started_at": "2025-02-01T08:00:00+02:00"}))

    given_by: Literal["principal", "partner", "customer"]
    title: Name | None = None
    participants: Annotated[list[uuid.UUID], Field(min_length=1, max_length=100)]
    started_at: AwareDatetime | None = None


class ServiceRecordIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"kind": "order", "description": "ordered 3 licences",
        "occurred_at": "2025-02-03T10:00:00+02:00", "purposes": ["customer_relationship"], "source": "staff"}))

    kind: Literal["order", "approval", "cancellation", "interaction"]
    description: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    occurred_at: AwareDatetime | None = None
    purposes: Annotated[list[ProcessingPurpose], Field(min_length=1)] = [ProcessingPurpose.customer_relationship]
    source: DataSource = DataSource.staff


class RectificationIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"changes": {"title": "CEO"}, "reason": "the person told us their title changed"}))

    changes: PersonFields
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class SelfRectificationIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"changes": {"last_name": "Virtanen"}, "reason": "my name changed"}))

    changes: SelfUpdate
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class DecisionIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"approve": True, "reason": "checked from the trade register"}))

    approve: bool
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class LoginIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"username": "matti.m", "password": "correct horse battery staple"}))

    username: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PasswordChangeIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=with_example({"current_password": "correct horse battery staple",
        "new_password": "a new long passphrase 42"}))

    current_password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    new_password: NewPassword
