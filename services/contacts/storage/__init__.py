"""SQL of the contacts service (asyncpg, parameters always bound), one module per aggregate.
Every function takes the caller's connection, so a change, its audit row and its outbox event
share one transaction. Handlers reach these through `shared.db.BoundStore` (`ctx.store.f`)."""
from services.contacts.storage.access_requests import *  # noqa: F403
from services.contacts.storage.accounts import *  # noqa: F403
from services.contacts.storage.common import PERSON_COLUMNS, Conn  # noqa: F401
from services.contacts.storage.connections import *  # noqa: F403
from services.contacts.storage.disposition import *  # noqa: F403
from services.contacts.storage.persons import *  # noqa: F403
from services.contacts.storage.portability import *  # noqa: F403
from services.contacts.storage.rectifications import *  # noqa: F403
from services.contacts.storage.suppression import *  # noqa: F403
