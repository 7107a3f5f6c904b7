"""Texts whose phonemes make up each language's phoneme inventory (``sde.quality.phonemes``).

Written for sde: short everyday sentences chosen so that, read by espeak-ng, they use every
phoneme its voice for the language produces for common words, rare ones included (English ʒ in
"measure", ɔɪ in "boy"; German ç, pf, ts; French nasal vowels and ɲ; Spanish θ, x, ʎ). A voice
not listed here (any other language) takes its inventory from the dataset itself.
"""

from __future__ import annotations

__all__ = ["REFERENCE_TEXTS"]

#: Language (espeak-ng voice name, or the part before its first "-") → reference text.
REFERENCE_TEXTS: dict[str, str] = {
    "en": (
        'The quick brown fox jumps over the lazy dog while a wise old owl looks on in quiet pleasure. '
        'Choose the usual measure of joy: a thick cup of hot cocoa, a good book, and the noise of rain. '
        'Vision and leisure are rare treasures; genuine courage is rarer, though nobody is sure why. '
        'The young bather thought the weather would change, so she pushed her boat further along the shore. '
        "Where are the chairs? Here, near the stairs, beside the poor tourist's pure white fur coat. "
        'Thirty thin thieves thanked the judge, then the others gathered their things and went home. '
        'Zebras hum, buzz and sing; ships sail through the azure harbour at sunrise, singing as they go. '
        "Could you put the sugar in the cookbook's wooden bowl? Father laughed, calm as the palm-lined car park. "
        'Men bet ten hens on a red sled; cats sat, and a fat rat ran back to the cabin. '
        'Hot pots stop; a lot of odd dogs got wet. Cut the butter, run for the bus, love your mother. '
        'Boil the oil, enjoy the toy, point at the coin. Now how about the loud brown cow? '
        "A day of rain in Spain, they say, makes the grey lake shine. Go slowly, show me home, don't moan. "
        'I like my bike; find time to fly high. Beauty, few, new, music, huge views, unusual yellow yachts. '
        'Happy, busy, city, lovely money, coffee, very easy. Bottle, button, little, kitten, garden, heaven. '
        'Singing, ringing, longer, finger, anger, English, bank, think. Church, cheap chips, jam, edge, bridge.'
    ),
    "de": (
        'Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. '
        'Ich möchte euch heute Abend in der Küche eine schöne Suppe kochen, sagte die Mutter leise. '
        'Das Mädchen füttert die Vögel im Garten, während der Junge mit dem Hund über die Wiese läuft. '
        'Pferde ziehen schwere Wagen durch die Stadt; die Fahrer pfeifen fröhlich ein altes Lied. '
        'Acht Kinder lachen laut, doch der Bach fließt still am Dorf vorbei. Neun Leute bauen ein Haus. '
        'Im Dschungel sieht man seltene Tiere; die Garage ist voll, das Genie versteht das Problem sofort. '
        'Deutsche Zeitungen berichten täglich über Wetter, Politik, Sport und Wirtschaft in Europa. '
        'Am Ufer stehen hübsche Bäume; Öl, Mühle, Glück, Hütte, Löffel, König, Tür und Bühne. '
        'Er fängt lange Fische im kühlen See, sie singt ein schönes Lied, und wir essen Brot mit Käse.'
    ),
    "fr": (
        'Portez ce vieux whisky au juge blond qui fume, dit la jeune femme avec un grand sourire. '
        'Le chien brun et le cygne blanc nagent ensemble dans le bain tiède du jardin enchanté. '
        'Huit gagnants heureux ont gagné un voyage en montagne avec leurs enfants et leurs amis. '
        'Une lune pleine brille sur la ville; les oiseaux chantent, puis la pluie tombe sur le toit. '
        'Ce garçon peint un vin rouge sur un pain; nous buvons du thé chaud et mangeons des fruits. '
        "Les feuilles d'automne tombent; la fille travaille, le soleil se lève, les abeilles bourdonnent. "
        'Je veux deux œufs et un peu de beurre; leur sœur cueille des fleurs jaunes près du champ. '
        'Il faut choisir: rester ici ou partir loin vers le nord, vers la mer ou vers le désert.'
    ),
    "es": (
        'El veloz murciélago hindú comía feliz cardillo y kiwi, la cigüeña tocaba el saxofón detrás del palenque de paja. '
        'Los niños juegan en el jardín mientras la abuela cocina una rica paella con arroz y pollo. '
        'Ayer llovió mucho, pero hoy el cielo está claro y el sol calienta las calles de la ciudad. '
        'El perro corre rápido por la carretera; Ramón quiere ir al río para pescar con su hijo Jorge. '
        'Cinco zapatos azules, gente generosa, guerra, guitarra, agua, chocolate, leche y churros. '
        'Queremos viajar a Méjico y a Chile el próximo año para conocer nuevas culturas y lenguas.'
    ),
}
