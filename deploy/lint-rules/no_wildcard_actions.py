"""cfn-lint rule: every IAM statement names its actions exactly.

Run with `cfn-lint --append-rules deploy/lint-rules deploy/hookline.yaml`
(.ci/cfn-lint does). An `Action` with `*` in it (`dynamodb:*`,
`dynamodb:Get*`, `*`) grants whatever AWS adds to that prefix later, and a
`NotAction` grants everything it does not list: both are refused.
"""

from cfnlint.rules import CloudFormationLintRule, RuleMatch


class NoWildcardActions(CloudFormationLintRule):
    id = "E9101"
    shortdesc = "IAM actions are named exactly"
    description = "IAM policy statements name each action; no wildcard and no NotAction."
    source_url = "https://docs.aws.amazon.com/IAM/latest/UserGuide/best-practices.html#grant-least-privilege"
    tags = ["iam", "hookline"]

    def match(self, cfn):
        matches = []
        for path in cfn.search_deep_keys("NotAction"):
            matches.append(RuleMatch(path[:-1], "NotAction grants every action it does not list"))
        for path in cfn.search_deep_keys("Action"):
            actions = path[-1]
            for index, action in enumerate(actions if isinstance(actions, list) else [actions]):
                if not isinstance(action, str):
                    matches.append(RuleMatch(path[:-1] + [index], "an IAM action must be a literal string"))
                elif "*" in action or "?" in action:
                    matches.append(
                        RuleMatch(path[:-1] + [index], f"IAM action {action!r} is a wildcard; name each action")
                    )
        return matches
