from rest_framework.routers import SimpleRouter

from .views import EventTypeViewSet, EventViewSet, ScheduledEventViewSet

router = SimpleRouter()
router.register("event-types", EventTypeViewSet, basename="event-type")
router.register("events", EventViewSet, basename="event")
router.register("scheduled-events", ScheduledEventViewSet, basename="scheduled-event")

urlpatterns = router.urls
