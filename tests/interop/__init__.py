"""Interoperability with implementations of the contract that are not ours:
Apache Avro's Java library and Kafka's Java client (``AvroInterop.java``, jars
from ``pom.xml``, run by ``java.py``) and sample records of every schema.
"""
