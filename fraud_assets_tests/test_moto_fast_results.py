"""The local stack's moto answers DynamoDB's data-plane operations as plain JSON
(moto_server.install_fast_dynamodb_results): what boto3 reads must equal moto's own serializer's
answer, operation by operation, for every attribute type."""

from __future__ import annotations

import boto3
from moto import mock_aws

ITEMS = [
    {
        "pk": {"S": "a"},
        "sk": {"N": "1"},
        "day": {"S": "2026-02-10"},
        "score": {"N": "0.125"},
        "nested": {"M": {"list": {"L": [{"S": "x"}, {"N": "-2.5e-7"}, {"BOOL": True}, {"NULL": True}]}}},
        "tags": {"SS": ["p", "q"]},
        "counts": {"NS": ["1", "2"]},
    },
    {"pk": {"S": "b"}, "sk": {"N": "2"}, "day": {"S": "2026-02-10"}, "score": {"N": "0.9"}, "text": {"S": 'é " \\ \n'}},
    {"pk": {"S": "c"}, "sk": {"N": "3"}, "day": {"S": "2026-02-11"}, "score": {"N": "0.5"}, "blob": {"B": b"\x00\xffbinary"}},
]


def exercise(client) -> list[dict]:
    client.create_table(
        TableName="fast",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "day", "AttributeType": "S"},
            {"AttributeName": "score", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byDay",
                "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": "day", "KeyType": "HASH"}, {"AttributeName": "score", "KeyType": "RANGE"}],
            }
        ],
    )
    answers = [client.batch_write_item(RequestItems={"fast": [{"PutRequest": {"Item": i}} for i in ITEMS[:2]]})]
    answers.append(client.put_item(TableName="fast", Item=ITEMS[2], ReturnConsumedCapacity="TOTAL"))
    answers.append(client.put_item(TableName="fast", Item={**ITEMS[1], "score": {"N": "0.95"}}, ReturnValues="ALL_OLD"))
    keys = [{"pk": i["pk"], "sk": i["sk"]} for i in ITEMS] + [{"pk": {"S": "zz"}, "sk": {"N": "9"}}]
    for key in keys:
        answers.append(client.get_item(TableName="fast", Key=key, ConsistentRead=True))
    answers.append(client.batch_get_item(RequestItems={"fast": {"Keys": keys, "ConsistentRead": True}}))
    answers.append(
        client.batch_get_item(
            RequestItems={"fast": {"Keys": keys, "ProjectionExpression": "#p, score, nested", "ExpressionAttributeNames": {"#p": "pk"}}}
        )
    )
    answers.append(
        client.query(
            TableName="fast",
            IndexName="byDay",
            KeyConditionExpression="#d = :d",
            ExpressionAttributeNames={"#d": "day"},
            ExpressionAttributeValues={":d": {"S": "2026-02-10"}},
        )
    )
    answers.append(
        client.query(
            TableName="fast",
            IndexName="byDay",
            KeyConditionExpression="#d = :d",
            Select="COUNT",
            ExpressionAttributeNames={"#d": "day"},
            ExpressionAttributeValues={":d": {"S": "2026-02-10"}},
        )
    )
    answers.append(client.query(TableName="fast", KeyConditionExpression="pk = :p", Limit=1, ExpressionAttributeValues={":p": {"S": "a"}}))
    answers.append(client.scan(TableName="fast", Limit=2))
    answers.append(client.scan(TableName="fast", FilterExpression="score > :s", ExpressionAttributeValues={":s": {"N": "0.2"}}))
    for answer in answers:
        answer.pop("ResponseMetadata", None)
    for size in (400_000, 410_000):  # moto's 400 KB item limit holds on the fast path too
        try:
            client.put_item(TableName="fast", Item={"pk": {"S": "big"}, "sk": {"N": "1"}, "blob": {"S": "x" * size}})
            answers.append({"put": size})
        except client.exceptions.ClientError as err:
            answers.append({"refused": size, **err.response["Error"]})
    return answers


def test_plain_json_answers_equal_motos_serializer(aws, monkeypatch):
    served = exercise(boto3.client("dynamodb", region_name=aws.region))
    for name in aws.env():
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
    with mock_aws():  # moto in this process, untouched: the reference
        reference = exercise(boto3.client("dynamodb", region_name=aws.region))
    assert served == reference
    assert any("Items" in a and a["Items"] for a in served) and any(a.get("Attributes") for a in served)
    assert served[-2:] == [
        {"put": 400_000},
        {"refused": 410_000, "Code": "ValidationException", "Message": "Item size has exceeded the maximum allowed size"},
    ]
