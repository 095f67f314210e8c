from rest_framework.routers import SimpleRouter

from .views import EventTypeViewSet, EventViewSet

router = SimpleRouter()
router.register("event-types", EventTypeViewSet, basename="event-type")
router.register("events", EventViewSet, basename="event")

urlpatterns = router.urls
