"""The school's shop (BrainCert): products and sales."""

from __future__ import annotations

from ._fields import (
    ACCOUNT_CONTEXT,
    BOOLEAN,
    DATETIME,
    EMAIL,
    INTEGER,
    STRING,
    TEXT,
    array,
    data_schema,
    described,
    entry,
    enum,
    obj,
    ref,
)

MONEY = {"type": ["number", "string"], "description": "An amount in the sale's currency."}

PRODUCT = ref(
    "product",
    type=enum("physical", "digital"),
    name=STRING,
    excerpt=TEXT,
    url=STRING,
    description=TEXT,
    price=MONEY,
    discount=MONEY,
    shipping_option={"type": "string", "description": "How it ships, for example both."},
    shipping_charge=MONEY,
    weight_lb={"type": ["number", "null"]},
    banner_url={"type": ["string", "null"]},
    sku=TEXT,
    track_stock=BOOLEAN,
    items_in_stock={"type": ["integer", "null"]},
)

_PRODUCT_SAMPLE = {
    "product": {
        "id": 5521,
        "type": "physical",
        "name": "Course Growing Star",
        "excerpt": "A printed workbook for the Growing Star course.",
        "url": "https://school.example.org/product/course-growing-star",
        "description": "Exercises and notes for every lesson of the course.",
        "price": 49.0,
        "discount": 0,
        "shipping_option": "both",
        "shipping_charge": 4.5,
        "weight_lb": 1.2,
        "banner_url": "https://school.example.org/media/course-growing-star.png",
        "sku": "CGS-001",
        "track_stock": True,
        "items_in_stock": 0,
    }
}

SALE_ITEM = obj(
    "type",
    "name",
    type={"type": "string", "description": "course, test, bundle, live_class or product."},
    name=STRING,
    price=MONEY,
    quantity=INTEGER,
    discount=MONEY,
    shipping_charge=MONEY,
    total_shipping_amount=MONEY,
    item_total=MONEY,
)

SALE = ref(
    "sale",
    ordered_at=DATETIME,
    payment_method={"type": "string", "description": "For example paypal."},
    payment_mode={"type": "string", "description": "For example card."},
    payment_status={"type": "string", "description": "For example paid."},
    currency={"type": "string", "description": "ISO 4217 code."},
    total_amount=MONEY,
    service_charge=MONEY,
    total=MONEY,
    items=array(SALE_ITEM),
)
SALE["required"] = ["id", "total", "currency"]

EVENT_TYPES = [
    entry(
        "product.created",
        group="Products",
        description="A product (a physical or digital item sold in the school's shop) was created.",
        sample=_PRODUCT_SAMPLE,
        schema=data_schema("product", product=PRODUCT, **ACCOUNT_CONTEXT),
    ),
    entry(
        "product.deleted",
        group="Products",
        description="A product was deleted; `product` is the product as it was.",
        sample=_PRODUCT_SAMPLE,
        schema=data_schema("product", product=PRODUCT, **ACCOUNT_CONTEXT),
    ),
    entry(
        "sale.completed",
        group="Sales",
        description="A sale was completed: an order was paid; `items` are what was bought.",
        sample={
            "sale": {
                "id": "ORD_ep3FVWZ9lC",
                "ordered_at": "2023-11-30T16:51:00.000Z",
                "payment_method": "paypal",
                "payment_mode": "card",
                "payment_status": "paid",
                "currency": "USD",
                "total_amount": 180,
                "service_charge": 0,
                "total": 180,
                "items": [
                    {
                        "type": "course",
                        "name": "PHP course",
                        "price": 100,
                        "quantity": 1,
                        "shipping_charge": 0,
                        "total_shipping_amount": 0,
                        "discount": 0,
                        "item_total": 100,
                    },
                    {
                        "type": "test",
                        "name": "Recurring payment test",
                        "price": 80,
                        "quantity": 1,
                        "shipping_charge": 0,
                        "total_shipping_amount": 0,
                        "discount": 0,
                        "item_total": 80,
                    },
                ],
            },
            "user": {
                "email": "yasin@example.org",
                "first_name": "Yasin",
                "customer_since": "2011-05-28T15:41:00.000Z",
            },
        },
        schema=data_schema(
            "sale",
            sale=SALE,
            user=described(
                obj(
                    id={"type": ["string", "integer"]},
                    email=EMAIL,
                    first_name=STRING,
                    last_name=STRING,
                    customer_since=DATETIME,
                ),
                "The buyer.",
            ),
            **ACCOUNT_CONTEXT,
        ),
    ),
]
