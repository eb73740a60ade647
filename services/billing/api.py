"""HTTP routes of the billing service."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
