"""HTTP routes of the contacts service."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
