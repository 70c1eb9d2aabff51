"""Console users: created from the CLI, checked at sign-in. Passwords are kept as salted scrypt
hashes (werkzeug.security); a tenant's user is scoped to that tenant, an operator to none."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from crmsync.db.models import ConsoleUser
from crmsync.db.types import utcnow

MIN_PASSWORD_LENGTH = 10
# Checked against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password", method="scrypt")


class ConsoleUserError(ValueError):
    """A user that cannot be created as asked (bad email, short password, taken email)."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking: `tenant_id` None means an operator, who sees every tenant."""
    user_id: str
    email: str
    tenant_id: str | None
    session_generation: int = 0

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


def normal_email(email: str) -> str:
    email = (email or "").strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > 320:
        raise ConsoleUserError(f"not an email address: {email!r}")
    return email


def create_user(session: Session, *, email: str, password: str, tenant_id: str | None,
                operator: bool) -> ConsoleUser:
    if operator == (tenant_id is not None):
        raise ConsoleUserError("a console user is either an operator or one tenant's user")
    email = normal_email(email)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConsoleUserError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == email)) is not None:
        raise ConsoleUserError(f"a console user {email} exists")
    user = ConsoleUser(email=email, password_hash=generate_password_hash(password, method="scrypt"),
                       tenant_id=tenant_id, is_operator=operator)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> Viewer | None:
    """The viewer for these credentials, or None (same answer and cost for an unknown email)."""
    try:
        email = normal_email(email)
    except ConsoleUserError:
        email = ""
    user = session.scalar(select(ConsoleUser).where(ConsoleUser.email == email)) if email else None
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    user.last_sign_in_at = utcnow()
    return viewer_of(user)


def viewer_of(user: ConsoleUser) -> Viewer:
    return Viewer(user.id, user.email, None if user.is_operator else user.tenant_id, user.session_generation or 0)


def end_sessions(session: Session, user_id: str) -> None:
    """Every session cookie of the user stops working (sign-out): its generation moves on."""
    user = session.get(ConsoleUser, user_id)
    if user is not None:
        user.session_generation = (user.session_generation or 0) + 1


def load_viewer(session: Session, user_id: str) -> Viewer | None:
    user = session.get(ConsoleUser, user_id)
    return viewer_of(user) if user is not None else None
