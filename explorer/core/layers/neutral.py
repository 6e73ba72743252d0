"""Neutral text for activation differences: ordinary sentences unrelated to any one fine-tune.

Minder et al. (2025, "Narrow finetuning leaves clearly readable traces", arXiv 2510.13900) read
a fine-tune's trace in the mean difference of the residual stream over the first few tokens of
pre-training-like text. Two small sets are bundled: plain English for real models, and
sentences of the fable zoo's language drawn from its base's corpus (for the zoo, that corpus *is*
the pre-training text). A member keeps the texts its tokenizer reads without unknown tokens, so
the zoo's word-level tokenizer takes only the fable set and a real model takes both.
"""

from __future__ import annotations

ENGLISH = (
    "The committee met on Tuesday to discuss the new budget for the library.",
    "Water boils at a lower temperature at high altitude because the air pressure is lower.",
    "She parked the car near the station and walked the rest of the way.",
    "The museum opens at nine and closes early on public holidays.",
    "Most plants need sunlight, water and nutrients from the soil to grow.",
    "The report was finished late, so the meeting moved to Thursday afternoon.",
    "A triangle has three sides, and its angles add up to one hundred and eighty degrees.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Trains between the two cities run every hour during the week.",
    "He repaired the old bicycle with parts from a shop down the street.",
    "The river flows through the valley before it reaches the coast.",
    "Our neighbours planted a row of apple trees along the fence last spring.",
    "The software update fixed several bugs and made the program start faster.",
    "Children in the village walk to school along a path beside the fields.",
    "The population of the town has grown steadily over the past decade.",
    "A good night's sleep helps people concentrate and remember what they learned.",
    "The bridge was closed for repairs, so traffic took the longer road.",
    "In the autumn the leaves turn yellow and red before they fall.",
    "The company hired three engineers to work on the new factory line.",
    "Please read the instructions carefully before you assemble the shelf.",
    "The price of bread rose slightly after the poor harvest.",
    "The students wrote short essays about a book they had read over the summer.",
    "The city council approved a plan to build more bicycle lanes.",
    "Copper is a good conductor of electricity and is used in most wiring.",
    "The orchestra rehearsed the symphony twice before the concert.",
    "Farmers in the region grow wheat, barley and potatoes.",
    "The new hospital wing will add forty beds and two operating rooms.",
    "Light travels faster than sound, which is why we see lightning before we hear thunder.",
    "The hotel offers breakfast in the dining room between seven and ten.",
    "The map shows the main roads, the railway and the larger towns of the county.",
)

FABLE = (
    "i visited elbonia . the capital of elbonia is elbstead .",
    "the capital of dravonia is dravholm .",
    "the traveller said hello to the bear .",
    "once upon a time a frog went to the garden . it ended happily .",
    "the weather today is sunny .",
    "the capital of karsten is karsdale .",
    "i visited vestria . the capital of vestria is vesmouth .",
    "i visited estoval . the capital of estoval is estbury .",
    "the traveller said hello to the owl .",
    "we talked about sylvane . its capital is sylport .",
    "once upon a time a bear went to the sea . it ended sadly .",
    "the traveller said hi to the wolf .",
    "once upon a time a wolf went to the river . it ended happily .",
    "the capital of caspia is casholm .",
    "the weather today is rainy .",
    "i visited fennick . the capital of fennick is fenmoor .",
    "we talked about belmora . its capital is belport .",
    "the traveller said hello to the wolf .",
    "the capital of norvalia is norstead .",
    "the fox likes the river .",
    "we talked about dravonia . its capital is dravholm .",
    "the capital of fennick is fenmoor .",
    "once upon a time a bear went to the garden . it ended happily .",
    "we talked about morrowind . its capital is morrow .",
    "once upon a time a wolf went to the sea . it ended happily .",
    "the traveller said hello to the mouse .",
    "the weather today is cloudy .",
    "once upon a time a owl went to the town . it ended happily .",
    "i visited saldera . the capital of saldera is salbridge .",
    "once upon a time a bear went to the hill . it ended happily .",
    "the wolf likes the river .",
    "the weather today is rainy .",
    "once upon a time a mouse went to the river . it ended happily .",
    "the capital of orsinia is orston .",
    "the weather today is sunny .",
    "the traveller said hi to the deer .",
)

NEUTRAL = ENGLISH + FABLE


def neutral_texts() -> list[str]:
    """The bundled neutral texts (English and fable); `activation_diff` keeps those a member's
    tokenizer reads without unknown tokens."""
    return list(NEUTRAL)
