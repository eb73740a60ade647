"""HTTP routes of the retention service."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
