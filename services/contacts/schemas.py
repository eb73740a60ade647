"""HTTP request bodies of the contacts service. Validation normalises (E.164, lower-cased
emails, y-tunnus) and names the field and rule on failure, never the value (422, SPEC §7)."""
from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.contacts import domain
from shared import privacy
from shared.messaging.events import DataSource, LegalBasis, ProcessingPurpose

Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(privacy.normalise_email)]
Phone = Annotated[str, StringConstraints(max_length=40), AfterValidator(privacy.normalise_phone)]
BusinessId = Annotated[str, StringConstraints(max_length=20), AfterValidator(domain.normalise_business_id)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Emails = Annotated[list[Email], Field(max_length=20), AfterValidator(domain.unique)]
Phones = Annotated[list[Phone], Field(max_length=20), AfterValidator(domain.unique)]
OtherContact = Annotated[dict[str, Annotated[str, StringConstraints(max_length=500)]], Field(max_length=20)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganisationIn(Body):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    business_id: BusinessId | None = None
    address: Text | None = None
    phone: Phone | None = None
    source: DataSource = DataSource.staff


class SelfUpdate(Body):
    """R11: what a person may change about themselves; which fields were sent is what changes."""

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
    def _null_is_empty(cls, value: object, info) -> object:  # noqa: ANN001
        if value is None:
            return {} if info.field_name == "other_contact" else []
        return value

    def changes(self) -> dict:
        return {name: getattr(self, name) for name in self.model_fields_set}


class PersonFields(SelfUpdate):
    """Fields staff may change (and a rectification may correct)."""

    organisation_id: uuid.UUID | None = None


class PersonIn(Body):
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
    source: DataSource = DataSource.staff

    def changes(self) -> dict:
        return {k: v for k, v in super().changes().items() if k != "source"}


Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=100,
                                            pattern=r"^[A-Za-z0-9._@-]+$")]
NewPassword = Annotated[str, StringConstraints(min_length=12, max_length=200)]


class AccountIn(Body):
    """Staff open an account; they never choose its password (SPEC §7): no `password` field."""

    username: Username
    nickname: Name | None = None
    identifiers: OtherContact = Field(default_factory=dict)


class ActivateIn(Body):
    """The person sets their own password with the single-use code they received."""

    username: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    new_password: NewPassword


class ReauthenticateIn(Body):
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class RelationshipIn(Body):
    kind: Literal["customer", "prospect"]
    organisation_id: uuid.UUID | None = None
    started_at: AwareDatetime | None = None


class EndIn(Body):
    ended_at: AwareDatetime | None = None


class AssignmentIn(Body):
    given_by: Literal["principal", "partner", "customer"]
    title: Name | None = None
    participants: Annotated[list[uuid.UUID], Field(min_length=1, max_length=100)]
    started_at: AwareDatetime | None = None


class ServiceRecordIn(Body):
    kind: Literal["order", "approval", "cancellation", "interaction"]
    description: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    occurred_at: AwareDatetime | None = None
    purposes: Annotated[list[ProcessingPurpose], Field(min_length=1)] = [ProcessingPurpose.customer_relationship]
    source: DataSource = DataSource.staff


class RectificationIn(Body):
    changes: PersonFields
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class SelfRectificationIn(Body):
    changes: SelfUpdate
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class DecisionIn(Body):
    approve: bool
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class LoginIn(Body):
    username: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PasswordChangeIn(Body):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    new_password: NewPassword
