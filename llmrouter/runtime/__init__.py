"""What the Faust dataflow runs on: the Kafka transport with a correct commit
rule and an idempotent producer (:mod:`.kafka`), work in flight fenced on
rebalance and stop (:mod:`.inflight`), the app that drains it
(:mod:`.faust_app`), checked writes (:mod:`.writes`) and the topic directory
that validates ``reply_to`` (:mod:`.topic_directory`).
"""
