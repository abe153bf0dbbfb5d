"""Routes: the operator dashboard (`/dashboard`). See `pages`."""

from api.routes.dashboard.pages import router

__all__ = ["router"]
